//! Reading a SentencePiece `tokenizer.model`: a protocol buffer `ModelProto`
//! (google/sentencepiece `src/sentencepiece_model.proto`). Only the fields a BPE model needs are
//! read: `pieces` (1) with `piece` (1), `score` (2), `type` (3); `trainer_spec` (2) with
//! `model_type` (3), `unk_id` (40), `bos_id` (41), `eos_id` (42), `pad_id` (43); `normalizer_spec`
//! (3) with `name` (1), `add_dummy_prefix` (3), `remove_extra_whitespaces` (4),
//! `escape_whitespaces` (5). Protobuf wire format: protobuf.dev/programming-guides/encoding.

use std::path::Path;

use crate::{Error, ModelKind, TokenType, Tokenizer, TokenizerSpec};

/// A protobuf field as read from the wire.
enum Field<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the file, for error messages.
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Reader<'a> {
        Reader { buf, pos: 0, base }
    }

    fn err(&self, what: &str) -> String {
        self.err_at(self.base + self.pos, what)
    }

    fn err_at(&self, offset: usize, what: &str) -> String {
        format!("not a SentencePiece model: {what} at byte offset {offset}")
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(self.err("varint longer than 64 bits"));
            }
            v |= ((b & 0x7F) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// The next (field number, value), or `None` at the end.
    fn next(&mut self) -> Result<Option<(u32, Field<'a>, usize)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let tag_at = self.base + self.pos;
        let tag = self.varint()?;
        let number = tag >> 3;
        if number == 0 || number > u32::MAX as u64 >> 3 {
            return Err(self.err_at(tag_at, &format!("field number {number}")));
        }
        let start = self.base + self.pos;
        let field = match tag & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let len = self.varint()?;
                if len > (self.buf.len() - self.pos) as u64 {
                    return Err(self.err_at(
                        tag_at,
                        &format!("a field of {len} bytes runs past the end of the data"),
                    ));
                }
                Field::Bytes(self.take(len as usize)?)
            }
            5 => {
                let b = self.take(4)?;
                Field::Fixed32(u32::from_le_bytes(b.try_into().unwrap()))
            }
            w => return Err(self.err_at(tag_at, &format!("wire type {w}"))),
        };
        Ok(Some((number as u32, field, start)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() - self.pos < n {
            return Err(self.err("truncated field"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
}

/// Proto `int32` fields are varints of the sign-extended 64-bit value.
fn as_i32(v: u64) -> i64 {
    v as i64 as i32 as i64
}

pub(crate) fn parse(data: &[u8], path: &Path) -> Result<Tokenizer, Error> {
    parse_inner(data)
        .map_err(|m| Error::format(path, m))?
        .map_err(|e| e.in_file(path))
}

#[allow(clippy::type_complexity)]
fn parse_inner(data: &[u8]) -> Result<Result<Tokenizer, Error>, String> {
    let mut tokens = Vec::new();
    let mut scores = Vec::new();
    let mut types = Vec::new();
    let mut model_type = 1u64; // proto default: UNIGRAM
    let (mut unk, mut bos, mut eos, mut pad) = (0i64, 1i64, 2i64, -1i64); // proto defaults
    let mut normalizer_name = String::new();
    let (mut dummy_prefix, mut remove_extra, mut escape) = (true, true, true);
    let mut saw_trainer = false;

    let mut r = Reader::new(data, 0);
    while let Some((num, field, at)) = r.next()? {
        match (num, field) {
            (1, Field::Bytes(b)) => {
                let mut p = Reader::new(b, at);
                let (mut piece, mut score, mut ty) = (None, 0f32, 1u64);
                while let Some((n, f, at2)) = p.next()? {
                    match (n, f) {
                        (1, Field::Bytes(s)) => {
                            piece = Some(String::from_utf8(s.to_vec()).map_err(|_| {
                                format!(
                                    "not a SentencePiece model: piece {} at byte offset {at2} is not UTF-8",
                                    tokens.len()
                                )
                            })?)
                        }
                        (2, Field::Fixed32(bits)) => score = f32::from_bits(bits),
                        (3, Field::Varint(v)) => ty = v,
                        (1..=3, _) => {
                            return Err(format!(
                                "not a SentencePiece model: field {n} of piece {} at byte offset {at2} has the wrong wire type",
                                tokens.len()
                            ));
                        }
                        _ => {}
                    }
                }
                let piece = piece.ok_or_else(|| {
                    format!(
                        "not a SentencePiece model: piece {} at byte offset {at} has no text",
                        tokens.len()
                    )
                })?;
                let ty = TokenType::from_i64(ty as i64).ok_or_else(|| {
                    format!(
                        "not a SentencePiece model: piece {} has type {ty}",
                        tokens.len()
                    )
                })?;
                tokens.push(piece);
                scores.push(score);
                types.push(ty);
            }
            (2, Field::Bytes(b)) => {
                saw_trainer = true;
                let mut t = Reader::new(b, at);
                while let Some((n, f, _)) = t.next()? {
                    if let Field::Varint(v) = f {
                        match n {
                            3 => model_type = v,
                            40 => unk = as_i32(v),
                            41 => bos = as_i32(v),
                            42 => eos = as_i32(v),
                            43 => pad = as_i32(v),
                            _ => {}
                        }
                    }
                }
            }
            (3, Field::Bytes(b)) => {
                let mut t = Reader::new(b, at);
                while let Some((n, f, _)) = t.next()? {
                    match (n, f) {
                        (1, Field::Bytes(s)) => {
                            normalizer_name = String::from_utf8_lossy(s).into_owned()
                        }
                        (3, Field::Varint(v)) => dummy_prefix = v != 0,
                        (4, Field::Varint(v)) => remove_extra = v != 0,
                        (5, Field::Varint(v)) => escape = v != 0,
                        _ => {}
                    }
                }
            }
            (1..=3, _) => {
                return Err(format!(
                    "not a SentencePiece model: field {num} at byte offset {at} has the wrong wire type"
                ));
            }
            _ => {}
        }
    }
    if tokens.is_empty() || !saw_trainer {
        return Err("not a SentencePiece model: no pieces or no trainer_spec".to_string());
    }
    if model_type != 2 {
        let name = match model_type {
            1 => "UNIGRAM",
            3 => "WORD",
            4 => "CHAR",
            _ => "unknown",
        };
        return Ok(Err(Error::Unsupported(format!(
            "SentencePiece model type {name} ({model_type}); only BPE (2) is implemented"
        ))));
    }
    if !matches!(normalizer_name.as_str(), "identity" | "") || remove_extra || !escape {
        return Ok(Err(Error::Unsupported(format!(
            "SentencePiece normalizer {normalizer_name:?} (remove_extra_whitespaces {remove_extra}, escape_whitespaces {escape}); only the identity normalizer of Llama is implemented"
        ))));
    }
    let n = tokens.len() as i64;
    let id = |v: i64| (0..n).contains(&v).then_some(v as u32);
    let mut spec = TokenizerSpec::new(ModelKind::SentencePiece, tokens);
    spec.scores = scores;
    spec.types = types;
    spec.unk = id(unk);
    spec.bos = id(bos);
    spec.eos = id(eos);
    spec.pad = id(pad);
    spec.add_bos = spec.bos.is_some();
    spec.add_space_prefix = dummy_prefix;
    Ok(Tokenizer::build(spec, true))
}

impl Tokenizer {
    /// Reads a SentencePiece `tokenizer.model` (BPE with the identity normalizer, as LLaMA and
    /// Llama 2 ship it). Encoding follows SentencePiece itself: one dummy prefix for the whole
    /// text, user-defined pieces matched in the text; BOS added by default when the model has one.
    pub fn from_sentencepiece_model(path: impl AsRef<Path>) -> Result<Tokenizer, Error> {
        let path = path.as_ref();
        let data = crate::error::read(path)?;
        Self::from_sentencepiece_bytes(&data, path)
    }

    /// As [`Tokenizer::from_sentencepiece_model`], from bytes; `path` only names them in errors.
    pub fn from_sentencepiece_bytes(data: &[u8], path: &Path) -> Result<Tokenizer, Error> {
        parse(data, path)
    }
}
