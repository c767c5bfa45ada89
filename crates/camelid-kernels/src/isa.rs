//! Which instruction set the kernels use, chosen once per process.
//!
//! `CAMELID_ISA=scalar|avx2|avx512` forces a path (tests and users can exercise the AVX2 path on
//! an AVX-512 machine); a request the CPU cannot honour falls back to the best path it can.

use std::sync::OnceLock;

/// A family of kernels. Ordered: each level needs what the previous one needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust: the reference every other path is tested against.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C, integer dot products with `vpmaddubsw`/`vpmaddwd`.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL + VNNI: 32 vector registers and `vpdpbusd`.
    Avx512,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    pub fn from_name(s: &str) -> Option<Isa> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(s))
    }

    /// Whether this CPU can run the path.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The best path this CPU supports.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|i| i.supported())
            .unwrap_or(Isa::Scalar)
    }

    /// Every path this CPU supports, scalar first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.supported()).collect()
    }

    /// The best supported path at or below `self`.
    pub fn or_below(self) -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|i| *i <= self && i.supported())
            .unwrap_or(Isa::Scalar)
    }

    /// The process-wide choice: `CAMELID_ISA` if set (clamped to what the CPU supports), else the
    /// best path. An unknown value is reported once on stderr and ignored.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| match std::env::var("CAMELID_ISA") {
            Ok(v) if !v.is_empty() => match Isa::from_name(&v) {
                Some(isa) => isa.or_below(),
                None => {
                    eprintln!(
                        "camelid: ignoring CAMELID_ISA={v:?} (expected scalar, avx2 or avx512)"
                    );
                    Isa::best()
                }
            },
            _ => Isa::best(),
        })
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
