//! Activation quantization (Q8) on NEON: the scalar reference's f32 operations (`127 / amax`,
//! one product, round to nearest even with `fcvtns`, saturate to i8), so both paths produce
//! identical bytes, scales and sums.

use std::arch::aarch64::*;

/// See [`crate::act::QuantQ8Fn`].
pub fn quant_q8(x: &[f32], qs: &mut [i8], d: &mut [f32], dsum: &mut [f32], dsum16: &mut [f32]) {
    let nb = x.len() / 32;
    assert!(qs.len() >= 32 * nb && d.len() >= nb && dsum.len() >= nb && dsum16.len() >= 2 * nb);
    for b in 0..nb {
        // SAFETY: block `b < nb` lies inside `x` and `qs` (checked above); NEON is part of the
        // aarch64 base ISA.
        unsafe {
            let xb = x.as_ptr().add(32 * b);
            let mut v = [vdupq_n_f32(0.0); 8];
            for (k, vk) in v.iter_mut().enumerate() {
                *vk = vld1q_f32(xb.add(4 * k));
            }
            // `fmaxnm` ignores a NaN as `f32::max` does.
            let mut m = vdupq_n_f32(0.0);
            for vk in v {
                m = vmaxnmq_f32(m, vabsq_f32(vk));
            }
            let a = vmaxnmvq_f32(m);
            let inv = if a > 0.0 { 127.0 / a } else { 0.0 };
            let mut i32s = [vdupq_n_s32(0); 8];
            for k in 0..8 {
                i32s[k] = vcvtnq_s32_f32(vmulq_n_f32(v[k], inv));
            }
            let narrow = |k: usize| {
                let lo = vqmovn_s32(i32s[k]);
                let hi = vqmovn_s32(i32s[k + 1]);
                vqmovn_s16(vcombine_s16(lo, hi))
            };
            let q0 = vcombine_s8(narrow(0), narrow(2));
            let q1 = vcombine_s8(narrow(4), narrow(6));
            let qp = qs.as_mut_ptr().add(32 * b);
            vst1q_s8(qp, q0);
            vst1q_s8(qp.add(16), q1);
            let (s0, s1) = (vaddlvq_s8(q0) as i32, vaddlvq_s8(q1) as i32);
            let scale = a / 127.0;
            d[b] = scale;
            dsum[b] = scale * (s0 + s1) as f32;
            dsum16[2 * b] = scale * s0 as f32;
            dsum16[2 * b + 1] = scale * s1 as f32;
        }
    }
}
