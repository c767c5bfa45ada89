//! Feeds arbitrary bytes to the `.pth` reader. An input whose first byte is odd is used whole,
//! as a file (the zip reader first); otherwise the rest becomes `archive/data.pkl` of a
//! well-formed stored archive that also holds a 64-byte storage `archive/data/0`, so that the
//! pickle reader sees the fuzzer's bytes. Beyond "no panic, no hang, no unbounded allocation":
//! every accepted tensor's bytes lie in the file and match its dtype and shape.
#![no_main]

use camelid_formats::pth::PthFile;
use libfuzzer_sys::fuzz_target;

/// A zip archive of stored entries (PKWARE APPNOTE 4.3.7, 4.3.12, 4.3.16), no zip64.
fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let at = out.len() as u32;
        let header = |sig: u32, central: bool| {
            let mut h = sig.to_le_bytes().to_vec();
            if central {
                h.extend(20u16.to_le_bytes()); // version made by
            }
            h.extend(20u16.to_le_bytes()); // version needed
            h.extend([0u8; 8]); // flags, method (stored), time, date
            h.extend(0u32.to_le_bytes()); // crc (not checked)
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra length
            if central {
                h.extend([0u8; 12]); // comment len, disk, attributes
                h.extend(at.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        out.extend(header(0x0403_4b50, false));
        out.extend_from_slice(data);
        central.extend(header(0x0201_4b50, true));
    }
    let cd_at = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_at.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let file = if first & 1 == 1 {
        data.to_vec()
    } else {
        let storage = [0x3fu8; 64];
        stored_zip(&[
            ("archive/data.pkl", rest),
            ("archive/byteorder", b"little"),
            ("archive/data/0", &storage),
        ])
    };
    let len = file.len();
    let Ok(pth) = PthFile::from_bytes(file, "fuzz.pth") else {
        return;
    };
    for t in pth.tensors() {
        assert!(t.data_range.end <= len);
        assert_eq!(pth.data(t).len(), t.n_elements() * t.dtype.size(), "{}", t.name);
        assert_eq!(pth.tensor(&t.name), Some(t));
    }
});
