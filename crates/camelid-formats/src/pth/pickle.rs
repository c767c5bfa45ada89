//! A pickle reader that understands exactly what `torch.save` writes for a state dict, and
//! refuses everything else.
//!
//! Opcodes: Python's `Lib/pickletools.py` (the reference documentation of the pickle machine)
//! and `Lib/pickle.py`. What torch writes: `torch/serialization.py` (`_save`: pickle protocol 2,
//! a `persistent_id` of `('storage', <storage class>, key, location, numel)` for every storage,
//! each stored as the archive entry `data/<key>`) and `torch/_tensor.py` (`_reduce_ex_internal`:
//! a plain tensor pickles as `torch._utils._rebuild_tensor_v2(storage, storage_offset, size,
//! stride, requires_grad, backward_hooks[, metadata])`); a `state_dict()` is a
//! `collections.OrderedDict`, rebuilt with `REDUCE` on an empty tuple, filled with `SETITEMS`,
//! and given its `_metadata` attribute by `BUILD`.
//!
//! This is not an interpreter: no name is ever resolved to code. The only globals are the five
//! listed in [`Global`]; they are tags this module knows the meaning of. Every other opcode
//! and every other global is an error naming it and its offset. Containers live in an arena and
//! are shared by index, so memo lookups copy nothing; memory grows at most linearly with the
//! pickle's length.

use std::collections::HashMap;
use std::rc::Rc;

use super::PthDtype;

/// An error at `offset` bytes into the pickle stream.
#[derive(Debug)]
pub(crate) struct PickleError {
    pub offset: usize,
    pub msg: String,
}

/// `('storage', StorageType, key, location, numel)`, as `torch.save`'s `persistent_id` writes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StorageRef {
    pub dtype: PthDtype,
    pub key: String,
    pub numel: u64,
}

/// The arguments of `_rebuild_tensor_v2`, in elements of the storage's type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

/// The only globals a checkpoint may name.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    Storage(PthDtype),
}

#[derive(Clone, Debug)]
enum Value {
    None,
    /// A bool's value is never needed either (`requires_grad`).
    Bool,
    Int(i64),
    /// A float's value is never needed (only tensor metadata is read).
    Float,
    Str(Rc<str>),
    /// A tuple, list or dict in the arena.
    Obj(usize),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

enum Obj {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

impl Value {
    /// The Python type, for error messages.
    fn kind(&self, arena: &[Obj]) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Obj(i) => match arena[*i] {
                Obj::Tuple(_) => "tuple",
                Obj::List(_) => "list",
                Obj::Dict(_) => "dict",
            },
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// Globals by module and name (torch/serialization.py `_save`, torch/_utils.py).
fn resolve(module: &str, name: &str) -> Result<Global, String> {
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensorV2),
        ("torch", "BFloat16Storage") => Ok(Global::Storage(PthDtype::BF16)),
        ("torch", "HalfStorage") => Ok(Global::Storage(PthDtype::F16)),
        ("torch", "FloatStorage") => Ok(Global::Storage(PthDtype::F32)),
        ("torch", s) if s.ends_with("Storage") => Err(format!(
            "storage class `torch.{s}` is not supported: camelid reads BFloat16, Half and Float storages"
        )),
        _ => Err(format!(
            "refused global `{module}.{name}`: a checkpoint may only name collections.OrderedDict, \
             torch._utils._rebuild_tensor_v2 and torch.{{BFloat16,Half,Float}}Storage (a checkpoint never runs code)"
        )),
    }
}

struct Machine<'a> {
    b: &'a [u8],
    pos: usize,
    /// Where the current opcode starts, for errors.
    op_at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    arena: Vec<Obj>,
}

/// Reads a pickled state dict: `{name: tensor}` in pickle order.
pub(crate) fn read_state_dict(b: &[u8]) -> Result<Vec<(String, TensorRef)>, PickleError> {
    let mut m = Machine {
        b,
        pos: 0,
        op_at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        arena: Vec::new(),
    };
    let top = m.run()?;
    m.state_dict(top)
}

impl Machine<'_> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError {
            offset: self.op_at,
            msg: msg.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        if n > self.b.len() - self.pos {
            return self.err(format!(
                "opcode 0x{:02x} needs {n} bytes of argument, {} remain (truncated pickle)",
                self.b[self.op_at],
                self.b.len() - self.pos
            ));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.err("pops an empty stack");
        }
        Ok(self.stack.pop().expect("checked"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let Some(mark) = self.marks.pop() else {
            return self.err("needs a MARK and there is none");
        };
        Ok(self.stack.split_off(mark))
    }

    fn new_obj(&mut self, o: Obj) -> Value {
        self.arena.push(o);
        Value::Obj(self.arena.len() - 1)
    }

    fn text(&self, bytes: &[u8]) -> Result<Rc<str>, PickleError> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.into()),
            Err(_) => self.err("string is not valid UTF-8"),
        }
    }

    fn string(&mut self, len: usize) -> Result<Value, PickleError> {
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).ok().map(Rc::<str>::from);
        match s {
            Some(s) => Ok(Value::Str(s)),
            None => self.err("string is not valid UTF-8"),
        }
    }

    /// A `module\nname\n` line pair of `GLOBAL`, each at most 256 bytes.
    fn line(&mut self) -> Result<Rc<str>, PickleError> {
        let rest = &self.b[self.pos..];
        let Some(n) = rest.iter().take(257).position(|&c| c == b'\n') else {
            return self.err("GLOBAL name is not a line of at most 256 bytes");
        };
        let s = self.text(&rest[..n])?;
        self.pos += n + 1;
        Ok(s)
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            if self.pos >= self.b.len() {
                self.op_at = self.pos;
                return self.err("the pickle ends without STOP (truncated)");
            }
            self.op_at = self.pos;
            let op = self.b[self.pos];
            self.pos += 1;
            match op {
                // PROTO: torch writes protocol 2; the opcodes below are all <= 4.
                0x80 => {
                    let v = self.u8()?;
                    if v > 5 {
                        return self.err(format!("pickle protocol {v} is not supported"));
                    }
                }
                // FRAME (protocol 4): a length hint only.
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool),
                0x89 => self.stack.push(Value::Bool),
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().expect("4"));
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take(2)?.try_into().expect("2"));
                    self.stack.push(Value::Int(v as i64));
                }
                // LONG1: a little-endian two's complement integer of n bytes.
                0x8a => {
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return self.err(format!("LONG1 of {n} bytes does not fit in 64 bits"));
                    }
                    let bytes = self.take(n)?;
                    let mut buf = if bytes.last().is_some_and(|&x| x & 0x80 != 0) {
                        [0xff; 8]
                    } else {
                        [0; 8]
                    };
                    buf[..n].copy_from_slice(bytes);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(Value::Float);
                }
                // BINUNICODE, SHORT_BINUNICODE; BINSTRING and SHORT_BINSTRING (bytes that
                // protocol 2 uses for Python 2 str) are read as UTF-8 text too.
                b'X' | b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8c | b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b')' => {
                    let v = self.new_obj(Obj::Tuple(Vec::new()));
                    self.stack.push(v);
                }
                b']' => {
                    let v = self.new_obj(Obj::List(Vec::new()));
                    self.stack.push(v);
                }
                b'}' => {
                    let v = self.new_obj(Obj::Dict(Vec::new()));
                    self.stack.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.new_obj(Obj::Tuple(items));
                    self.stack.push(v);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() < floor + n {
                        return self.err(format!("TUPLE{n} needs {n} items on the stack"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let v = self.new_obj(Obj::Tuple(items));
                    self.stack.push(v);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.new_obj(Obj::List(items));
                    self.stack.push(v);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    let v = self.new_obj(Obj::Dict(pairs));
                    self.stack.push(v);
                }
                b'a' => {
                    let v = self.pop()?;
                    let list = self.top_list()?;
                    list.push(v);
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top_list()?;
                    list.extend(items);
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.top_dict()?.push((k, v));
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.top_dict()?.extend(pairs);
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.pop()?;
                    self.stack.push(v.clone());
                    self.stack.push(v);
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.get(i)?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.get(i)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = resolve(&module, &name).or_else(|m| self.err(m))?;
                    self.stack.push(Value::Global(g));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return self.err("STACK_GLOBAL needs two strings");
                    };
                    let g = resolve(&module, &name).or_else(|m| self.err(m))?;
                    self.stack.push(Value::Global(g));
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = self.storage(pid)?;
                    self.stack.push(Value::Storage(Rc::new(s)));
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.reduce(f, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    self.build(state)?;
                }
                _ => return self.err(format!("{} is not allowed in a checkpoint", op_name(op))),
            }
        }
    }

    fn put(&mut self, i: u32) -> Result<(), PickleError> {
        let Some(v) = self.stack.last() else {
            return self.err("memoizes an empty stack");
        };
        self.memo.insert(i, v.clone());
        Ok(())
    }

    fn get(&mut self, i: u32) -> Result<(), PickleError> {
        match self.memo.get(&i) {
            Some(v) => {
                let v = v.clone();
                self.stack.push(v);
                Ok(())
            }
            None => self.err(format!("memo key {i} was never stored")),
        }
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>, PickleError> {
        if items.len() % 2 != 0 {
            return self.err(format!("{} items cannot form key-value pairs", items.len()));
        }
        let mut it = items.into_iter();
        let mut out = Vec::with_capacity(it.len() / 2);
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn top_obj(&mut self) -> Result<&mut Obj, PickleError> {
        match self.stack.last() {
            Some(Value::Obj(i)) => Ok(&mut self.arena[*i]),
            Some(v) => {
                let kind = v.kind(&self.arena);
                self.err(format!("modifies a {kind}, which is not a list or dict"))
            }
            None => self.err("modifies an empty stack"),
        }
    }

    fn top_list(&mut self) -> Result<&mut Vec<Value>, PickleError> {
        let at = self.op_at;
        match self.top_obj()? {
            Obj::List(l) => Ok(l),
            _ => Err(PickleError {
                offset: at,
                msg: "APPEND(S) on something that is not a list".into(),
            }),
        }
    }

    fn top_dict(&mut self) -> Result<&mut Vec<(Value, Value)>, PickleError> {
        let at = self.op_at;
        match self.top_obj()? {
            Obj::Dict(d) => Ok(d),
            _ => Err(PickleError {
                offset: at,
                msg: "SETITEM(S) on something that is not a dict".into(),
            }),
        }
    }

    fn tuple(&self, v: &Value) -> Option<&[Value]> {
        match v {
            Value::Obj(i) => match &self.arena[*i] {
                Obj::Tuple(t) => Some(t),
                _ => None,
            },
            _ => None,
        }
    }

    fn ints(&self, v: &Value, what: &str) -> Result<Vec<u64>, PickleError> {
        let Some(t) = self.tuple(v) else {
            return self.err(format!("_rebuild_tensor_v2: {what} is not a tuple"));
        };
        t.iter()
            .map(|x| match x {
                Value::Int(n) if *n >= 0 => Ok(*n as u64),
                _ => self.err(format!(
                    "_rebuild_tensor_v2: {what} holds something other than a non-negative int"
                )),
            })
            .collect()
    }

    /// `BINPERSID`: the storage reference torch writes (serialization.py `persistent_id`).
    fn storage(&self, pid: Value) -> Result<StorageRef, PickleError> {
        let bad = || {
            self.err(
                "persistent id is not ('storage', StorageClass, key, location, numel)".to_string(),
            )
        };
        let Some(t) = self.tuple(&pid) else {
            return bad();
        };
        let [
            Value::Str(tag),
            Value::Global(class),
            Value::Str(key),
            Value::Str(_),
            Value::Int(n),
        ] = t
        else {
            return bad();
        };
        let Global::Storage(dtype) = class else {
            return bad();
        };
        if &**tag != "storage" || *n < 0 {
            return bad();
        }
        Ok(StorageRef {
            dtype: *dtype,
            key: key.to_string(),
            numel: *n as u64,
        })
    }

    fn reduce(&mut self, f: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Global(g) = f else {
            let kind = f.kind(&self.arena);
            return self.err(format!(
                "REDUCE calls a {kind}; only the allowed globals may be called"
            ));
        };
        let Some(a) = self.tuple(&args) else {
            return self.err("REDUCE arguments are not a tuple");
        };
        match g {
            Global::OrderedDict if a.is_empty() => Ok(self.new_obj(Obj::Dict(Vec::new()))),
            Global::OrderedDict => self.err("collections.OrderedDict is only rebuilt empty"),
            Global::Storage(_) => self.err("a storage class is only allowed in a persistent id"),
            Global::RebuildTensorV2 => {
                if !(6..=7).contains(&a.len()) {
                    return self.err(format!(
                        "_rebuild_tensor_v2 takes 6 or 7 arguments, got {}",
                        a.len()
                    ));
                }
                let Value::Storage(storage) = &a[0] else {
                    return self.err("_rebuild_tensor_v2: the first argument is not a storage");
                };
                let Value::Int(offset) = a[1] else {
                    return self.err("_rebuild_tensor_v2: storage_offset is not an int");
                };
                if offset < 0 {
                    return self.err("_rebuild_tensor_v2: storage_offset is negative");
                }
                let shape = self.ints(&a[2], "size")?;
                let stride = self.ints(&a[3], "stride")?;
                let Value::Bool = a[4] else {
                    return self.err("_rebuild_tensor_v2: requires_grad is not a bool");
                };
                let hooks_empty = matches!(&a[5], Value::Obj(i) if matches!(&self.arena[*i], Obj::Dict(d) if d.is_empty()));
                if !hooks_empty {
                    return self.err("_rebuild_tensor_v2: backward_hooks is not an empty dict");
                }
                if shape.len() != stride.len() {
                    return self.err("_rebuild_tensor_v2: size and stride differ in length");
                }
                Ok(Value::Tensor(Rc::new(TensorRef {
                    storage: (**storage).clone(),
                    offset: offset as u64,
                    shape,
                    stride,
                })))
            }
        }
    }

    /// `BUILD`: torch gives a state dict its `_metadata` this way (an attribute camelid has no
    /// use for). State is accepted and dropped on a dict, and on a tensor only when empty.
    fn build(&mut self, state: Value) -> Result<(), PickleError> {
        let state_is_dict =
            matches!(&state, Value::Obj(i) if matches!(self.arena[*i], Obj::Dict(_)));
        let state_is_empty = match &state {
            Value::None => true,
            Value::Obj(i) => match &self.arena[*i] {
                Obj::Dict(d) => d.is_empty(),
                Obj::Tuple(t) => t.is_empty(),
                Obj::List(l) => l.is_empty(),
            },
            _ => false,
        };
        match self.stack.last() {
            Some(Value::Obj(i)) if matches!(self.arena[*i], Obj::Dict(_)) && state_is_dict => {
                Ok(())
            }
            Some(Value::Tensor(_)) if state_is_empty => Ok(()),
            Some(v) => {
                let (kind, sk) = (v.kind(&self.arena), state.kind(&self.arena));
                self.err(format!(
                    "BUILD of a {kind} with a {sk} state is not allowed"
                ))
            }
            None => self.err("BUILD on an empty stack"),
        }
    }

    fn state_dict(&self, top: Value) -> Result<Vec<(String, TensorRef)>, PickleError> {
        let Value::Obj(i) = top else {
            let kind = top.kind(&self.arena);
            return self.err(format!("the pickle holds a {kind}, not a state dict"));
        };
        let Obj::Dict(items) = &self.arena[i] else {
            let kind = top.kind(&self.arena);
            return self.err(format!("the pickle holds a {kind}, not a state dict"));
        };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(items.len());
        for (k, v) in items {
            let Value::Str(name) = k else {
                let kind = k.kind(&self.arena);
                return self.err(format!("the state dict has a {kind} key"));
            };
            let Value::Tensor(t) = v else {
                let kind = v.kind(&self.arena);
                return self.err(format!(
                    "state dict entry {name:?} is of type {kind}, not a tensor"
                ));
            };
            if !seen.insert(name.clone()) {
                return self.err(format!("state dict entry {name:?} is set twice"));
            }
            out.push((name.to_string(), (**t).clone()));
        }
        Ok(out)
    }
}

/// The pickletools name of an opcode, for errors.
fn op_name(op: u8) -> String {
    let name = match op {
        b'I' => "INT",
        b'L' => "LONG",
        b'F' => "FLOAT",
        b'S' => "STRING",
        b'V' => "UNICODE",
        b'p' => "PUT",
        b'g' => "GET",
        b'P' => "PERSID",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x8b => "LONG4",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "",
    };
    if name.is_empty() {
        format!("unknown opcode 0x{op:02x}")
    } else {
        format!("opcode {name} (0x{op:02x})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(b: &[u8]) -> PickleError {
        read_state_dict(b).unwrap_err()
    }

    #[test]
    fn os_system_is_refused_by_name_and_offset() {
        let p = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85R.";
        let e = err(p);
        assert_eq!(e.offset, 2);
        assert!(e.msg.contains("refused global `os.system`"), "{}", e.msg);
    }

    #[test]
    fn inst_and_obj_are_refused() {
        let e = err(b"\x80\x02(ios\nsystem\n.");
        assert!(e.msg.contains("INST"), "{}", e.msg);
    }

    #[test]
    fn empty_state_dict_reads() {
        // collections.OrderedDict() then BUILD with {} as torch writes for `_metadata`.
        let p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01}b.";
        assert!(read_state_dict(p).unwrap().is_empty());
    }

    #[test]
    fn truncation_is_an_error() {
        let e = err(b"\x80\x02X\xff\x00\x00\x00ab");
        assert!(e.msg.contains("truncated"), "{}", e.msg);
        let e = err(b"\x80\x02}");
        assert!(e.msg.contains("without STOP"), "{}", e.msg);
    }

    #[test]
    fn long1_sign_extends() {
        let p = b"\x80\x02}(X\x01\x00\x00\x00a\x8a\x02\xff\xffu.";
        let e = err(p);
        assert!(e.msg.contains("is of type int"), "{}", e.msg);
    }
}
