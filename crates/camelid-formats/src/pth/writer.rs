//! Writes a state dict in the layout `torch.save` gives it, for building Meta-format folders
//! (tests make Llama 3 folders with the real 128,256-token vocabulary this way, too big to keep
//! as fixtures). What is written is the subset the reader accepts, in torch's own shape
//! (`torch/serialization.py` `_save`, pickle protocol 2; caffe2 `PyTorchStreamWriter` for the
//! archive): `archive/data.pkl` pickling a `collections.OrderedDict` of
//! `torch._utils._rebuild_tensor_v2(persistent_id(('storage', torch.<T>Storage, key, 'cpu',
//! numel)), 0, size, stride, False, OrderedDict())`, one stored entry `archive/data/<key>` per
//! tensor aligned to 64 bytes, `archive/version` and `archive/byteorder`. Python's `torch.load`
//! reads the result (checked by hand with torch 2.x).

use std::io::{self, Write};

use super::PthDtype;

/// One tensor to write: row-major little-endian bytes of `shape`.
pub struct PthEntry<'a> {
    pub name: &'a str,
    pub dtype: PthDtype,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

/// The pickle opcodes used (Python `Lib/pickletools.py`).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const GLOBAL: u8 = b'c';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const REDUCE: u8 = b'R';
    pub const MARK: u8 = b'(';
    pub const TUPLE: u8 = b't';
    pub const BINUNICODE: u8 = b'X';
    pub const BININT: u8 = b'J';
    pub const LONG1: u8 = 0x8a;
    pub const BINPERSID: u8 = b'Q';
    pub const NEWFALSE: u8 = 0x89;
    pub const SETITEMS: u8 = b'u';
    pub const STOP: u8 = b'.';
}

fn global(p: &mut Vec<u8>, module: &str, name: &str) {
    p.push(op::GLOBAL);
    p.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
}

fn string(p: &mut Vec<u8>, s: &str) {
    p.push(op::BINUNICODE);
    p.extend_from_slice(&(s.len() as u32).to_le_bytes());
    p.extend_from_slice(s.as_bytes());
}

fn int(p: &mut Vec<u8>, n: usize) {
    match i32::try_from(n) {
        Ok(v) => {
            p.push(op::BININT);
            p.extend_from_slice(&v.to_le_bytes());
        }
        Err(_) => {
            // LONG1: a little-endian two's-complement integer of the given byte count.
            p.extend_from_slice(&[op::LONG1, 8]);
            p.extend_from_slice(&(n as u64).to_le_bytes());
        }
    }
}

fn int_tuple(p: &mut Vec<u8>, v: impl Iterator<Item = usize>) {
    p.push(op::MARK);
    for n in v {
        int(p, n);
    }
    p.push(op::TUPLE);
}

fn pickle(entries: &[PthEntry]) -> Vec<u8> {
    let mut p = vec![op::PROTO, 2];
    global(&mut p, "collections", "OrderedDict");
    p.extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE, op::MARK]);
    for (key, e) in entries.iter().enumerate() {
        string(&mut p, e.name);
        global(&mut p, "torch._utils", "_rebuild_tensor_v2");
        p.push(op::MARK);
        // The storage, as a persistent id.
        p.push(op::MARK);
        string(&mut p, "storage");
        let class = match e.dtype {
            PthDtype::F32 => "FloatStorage",
            PthDtype::F16 => "HalfStorage",
            PthDtype::BF16 => "BFloat16Storage",
        };
        global(&mut p, "torch", class);
        string(&mut p, &key.to_string());
        string(&mut p, "cpu");
        int(&mut p, e.shape.iter().product());
        p.extend_from_slice(&[op::TUPLE, op::BINPERSID]);
        int(&mut p, 0);
        int_tuple(&mut p, e.shape.iter().copied());
        // Row-major strides: each dimension steps over the product of the ones after it.
        let strides: Vec<usize> = (0..e.shape.len())
            .map(|d| e.shape[d + 1..].iter().product())
            .collect();
        int_tuple(&mut p, strides.into_iter());
        p.push(op::NEWFALSE);
        global(&mut p, "collections", "OrderedDict");
        p.extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE, op::TUPLE, op::REDUCE]);
    }
    p.extend_from_slice(&[op::SETITEMS, op::STOP]);
    p
}

/// CRC-32 (ISO-HDLC, the zip checksum: APPNOTE.TXT 4.4.7), bit by bit.
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Writes `entries` as a `.pth` file. Sizes beyond the 32-bit zip fields (4 GiB) are refused
/// rather than written as zip64.
pub fn write_pth(out: &mut impl Write, entries: &[PthEntry]) -> io::Result<()> {
    for e in entries {
        let want = e.shape.iter().product::<usize>() * e.dtype.size();
        if e.data.len() != want {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tensor {}: {} bytes for shape {:?} of {}",
                    e.name,
                    e.data.len(),
                    e.shape,
                    e.dtype
                ),
            ));
        }
    }
    let pkl = pickle(entries);
    let mut files: Vec<(String, &[u8])> = vec![("archive/data.pkl".into(), &pkl)];
    for (key, e) in entries.iter().enumerate() {
        files.push((format!("archive/data/{key}"), e.data));
    }
    files.push(("archive/version".into(), b"3\n"));
    files.push(("archive/byteorder".into(), b"little"));

    let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "over 4 GiB: needs zip64");
    let mut at = 0usize;
    let mut central = Vec::new();
    let mut n = 0u16;
    for (name, data) in &files {
        let size = u32::try_from(data.len()).map_err(|_| too_big())?;
        let crc = crc32(data);
        // Pad the data to 64 bytes with an extra field, as torch does (id 0x4246, "FB").
        let after_name = at + 30 + name.len();
        let pad = 4 + (64 - (after_name + 4) % 64) % 64;
        let mut local = Vec::with_capacity(30 + name.len() + pad);
        local.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        local.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method, time, date
        local.extend_from_slice(&crc.to_le_bytes());
        local.extend_from_slice(&size.to_le_bytes());
        local.extend_from_slice(&size.to_le_bytes());
        local.extend_from_slice(&(name.len() as u16).to_le_bytes());
        local.extend_from_slice(&(pad as u16).to_le_bytes());
        local.extend_from_slice(name.as_bytes());
        local.extend_from_slice(&0x4246u16.to_le_bytes());
        local.extend_from_slice(&((pad - 4) as u16).to_le_bytes());
        local.resize(local.len() + pad - 4, 0);
        out.write_all(&local)?;
        out.write_all(data)?;

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // made by, needed, flags, method, time, date
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]); // extra, comment, disk, internal, external attributes
        central.extend_from_slice(&u32::try_from(at).map_err(|_| too_big())?.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        at += local.len() + data.len();
        n += 1;
    }
    let cd_at = u32::try_from(at).map_err(|_| too_big())?;
    out.write_all(&central)?;
    let mut eocd = Vec::with_capacity(22);
    eocd.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    eocd.extend_from_slice(&[0; 4]); // this disk, the central directory's disk
    eocd.extend_from_slice(&n.to_le_bytes());
    eocd.extend_from_slice(&n.to_le_bytes());
    eocd.extend_from_slice(&(central.len() as u32).to_le_bytes());
    eocd.extend_from_slice(&cd_at.to_le_bytes());
    eocd.extend_from_slice(&[0; 2]); // comment length
    out.write_all(&eocd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pth::PthFile;

    #[test]
    fn crc32_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn written_files_read_back() {
        let a: Vec<u8> = (0..24u16).flat_map(|v| v.to_le_bytes()).collect();
        let b: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let entries = [
            PthEntry {
                name: "layers.0.attention.wq.weight",
                dtype: PthDtype::BF16,
                shape: &[4, 6],
                data: &a,
            },
            PthEntry {
                name: "norm.weight",
                dtype: PthDtype::F32,
                shape: &[2],
                data: &b,
            },
        ];
        let mut bytes = Vec::new();
        write_pth(&mut bytes, &entries).unwrap();
        let f = PthFile::from_bytes(bytes, "t.pth").unwrap();
        assert_eq!(f.tensors().len(), 2);
        for e in &entries {
            let t = f.tensor(e.name).unwrap();
            assert_eq!((t.dtype, t.shape.as_slice()), (e.dtype, e.shape));
            assert_eq!(t.data_range.start % 64, 0);
            assert_eq!(f.data(t), e.data);
        }
        let bad = PthEntry {
            name: "x",
            dtype: PthDtype::F32,
            shape: &[3],
            data: &b,
        };
        assert!(write_pth(&mut Vec::new(), &[bad]).is_err());
    }
}
