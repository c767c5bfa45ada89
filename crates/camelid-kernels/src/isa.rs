//! Which instruction set the kernels use, chosen once per process.
//!
//! `CAMELID_ISA=scalar|avx2|avx512|neon` forces a path (tests and users can exercise the AVX2
//! path on an AVX-512 machine); a request the CPU cannot honour falls back to the best path it
//! can below it. A path of another architecture (`neon` on x86-64, `avx2` on aarch64) says
//! nothing about what is wanted here, so it gets this CPU's best path, with a note on stderr.

use std::sync::OnceLock;

/// A family of kernels. Ordered within one architecture: each level needs what the previous one
/// needs (Scalar < Avx2 < Avx512 on x86-64, Scalar < Neon on aarch64); comparing paths of two
/// architectures means nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust: the reference every other path is tested against.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C, integer dot products with `vpmaddubsw`/`vpmaddwd`.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL + VNNI: 32 vector registers and `vpdpbusd`.
    Avx512,
    /// aarch64 Advanced SIMD (NEON, part of the base ISA): integer dot products with
    /// `smull`/`sadalp`.
    Neon,
}

impl Isa {
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon];

    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    pub fn from_name(s: &str) -> Option<Isa> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(s))
    }

    /// Whether the path is one of this architecture's (Scalar is everyone's).
    pub const fn native(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 | Isa::Avx512 => cfg!(target_arch = "x86_64"),
            Isa::Neon => cfg!(target_arch = "aarch64"),
        }
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
            // NEON is mandatory in AArch64 (Arm ARM, A1.5): nothing to detect.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => true,
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

    /// The best supported path at or below `self`; for another architecture's path, the best
    /// this CPU supports.
    pub fn or_below(self) -> Isa {
        if !self.native() {
            return Isa::best();
        }
        Isa::ALL
            .into_iter()
            .rev()
            .find(|i| i.native() && *i <= self && i.supported())
            .unwrap_or(Isa::Scalar)
    }

    /// The process-wide choice: `CAMELID_ISA` if set (clamped to what the CPU supports), else the
    /// best path. An unknown value or another architecture's path is reported once on stderr.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| match std::env::var("CAMELID_ISA") {
            Ok(v) if !v.is_empty() => match Isa::from_name(&v) {
                Some(isa) if isa.native() => isa.or_below(),
                Some(isa) => {
                    let best = Isa::best();
                    eprintln!(
                        "camelid: CAMELID_ISA={isa} is not a path of this architecture; using {best}"
                    );
                    best
                }
                None => {
                    eprintln!(
                        "camelid: ignoring CAMELID_ISA={v:?} (expected scalar, avx2, avx512 or neon)"
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Another architecture's path lowers to this CPU's best, never to scalar by accident; a
    /// native path lowers within its own architecture.
    #[test]
    fn foreign_paths_lower_to_the_best_and_native_ones_below() {
        for isa in Isa::ALL {
            let got = isa.or_below();
            assert!(got.supported() && got.native(), "{isa} -> {got}");
            if isa.native() {
                assert!(got <= isa, "{isa} -> {got}");
            } else {
                assert_eq!(got, Isa::best(), "{isa}");
            }
        }
        assert_eq!(Isa::Scalar.or_below(), Isa::Scalar);
    }

    /// On aarch64 the NEON path is the best one: it cannot silently become scalar.
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn neon_is_the_best_path_on_aarch64() {
        assert_eq!(Isa::best(), Isa::Neon);
        assert_eq!(Isa::Avx2.or_below(), Isa::Neon);
    }
}
