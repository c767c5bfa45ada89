// Tests of the kernels under host emulation (emu.h) against scalar references: dequant/embed
// bit-exact, matvec within 1e-6 of sum |w x|, ops bit-exact where the CPU rounds the same,
// attention against a double-precision softmax.
#include "emu.h"
#include <string>
#include <cstdio>
#include <random>
#include "common_emu.cpp"
#include "iq_grids_emu.cpp"
#include "quant_emu.cpp"
#include "ops_emu.cpp"
#include "attention_emu.cpp"
#include "reference.h"

// The decode products' launch geometry for quant.cu's CTA shape (MV_ROWS rows of MV_WARPS
// warps; 2 x 4 unless the build defines another, as scripts/check-cuda-kernels.sh does for a
// second run of the decode products' tests).
#define MV_BLOCK {32, MV_WARPS, 1}
#define CTAS(rows) (unsigned)(((rows) + MV_ROWS - 1) / MV_ROWS)
typedef void (*MV)(const unsigned char*, const float*, float*, int, int, int);
typedef void (*MV3)(const unsigned char*, float*, int, const unsigned char*, float*, int, const unsigned char*, float*, int,
                    const float*, int, int, const int*, const float*, void* const*, void* const*, int, int);
typedef void (*MVN)(const unsigned char*, const float*, float*, int, int, float*, const float*, float, int*);
typedef void (*MVS)(const unsigned char*, const unsigned char*, const float*, float*, float*, int, int, int);
static std::mt19937 rng(7);
static float U() { return std::uniform_real_distribution<float>(-1, 1)(rng); }
int fails = 0;
typedef void (*DQ32)(const unsigned char*, float*, long long);
typedef void (*DQ16)(const unsigned char*, unsigned short*, long long);
typedef void (*EMB)(const unsigned char*, const unsigned int*, float*, int, int);
static void launch1(unsigned gx, unsigned gy, unsigned bx, std::function<void()> f) { launch({gx, gy, 1}, {bx, 1, 1}, f); }
// Sane scale fields in one block of random bytes of type `s` (f16 scales a draw of `u` times a
// small factor; a float type's element a draw times 4), so that its values are finite.
static void sane_scales(const std::string& s, uint8_t* blk, const std::function<float()>& u) {
  auto put16 = [&](size_t off, float v){ unsigned short h=emu_f2h(v); blk[off]=h&255; blk[off+1]=h>>8; };
  if (s=="q8_0"||s=="q4_0"||s=="q5_0") put16(0,u()*0.1f);
  if (s=="q4_1"||s=="q5_1"||s=="q4_k"||s=="q5_k") { put16(0,u()*0.1f); put16(2,u()*0.1f); }
  if (s=="q6_k") put16(208,u()*0.1f);
  if (s=="q2_k") { put16(80,u()*0.1f); put16(82,u()*0.1f); }
  if (s=="q3_k") put16(108,u()*0.1f);
  if (s=="iq4_nl"||s=="iq4_xs") put16(0,u()*0.01f);
  if (s.rfind("iq2",0)==0||s.rfind("iq3",0)==0||s=="iq1_s") put16(0,u()*0.01f);
  if (s=="tq1_0") put16(52,u()*0.05f);
  if (s=="tq2_0") put16(64,u()*0.05f);
  // IQ1_M's d is the top nibbles of its four scale words.
  if (s=="iq1_m") { unsigned short h=emu_f2h(u()*0.01f); for (int k=0;k<4;k++) blk[49+2*k]=(blk[49+2*k]&0x0f)|(((h>>(4*k))&15)<<4); }
  if (s=="f16") put16(0,u()*4);
  if (s=="f32") { float v=u()*4; memcpy(blk,&v,4); }
  if (s=="bf16") { float v=u()*4; unsigned x; memcpy(&x,&v,4); blk[0]=(x>>16)&255; blk[1]=x>>24; }
}
void test_dequant() {
  struct T { const char* name; int bs, bb; DQ32 d32; DQ16 d16; EMB emb; bool isfloat; };
  T types[] = {
    {"q8_0",32,34,dequant_q8_0_f32,dequant_q8_0_f16,embed_q8_0,false},
    {"q4_0",32,18,dequant_q4_0_f32,dequant_q4_0_f16,embed_q4_0,false},
    {"q4_1",32,20,dequant_q4_1_f32,dequant_q4_1_f16,embed_q4_1,false},
    {"q5_0",32,22,dequant_q5_0_f32,dequant_q5_0_f16,embed_q5_0,false},
    {"q5_1",32,24,dequant_q5_1_f32,dequant_q5_1_f16,embed_q5_1,false},
    {"q4_k",256,144,dequant_q4_k_f32,dequant_q4_k_f16,embed_q4_k,false},
    {"q5_k",256,176,dequant_q5_k_f32,dequant_q5_k_f16,embed_q5_k,false},
    {"q6_k",256,210,dequant_q6_k_f32,dequant_q6_k_f16,embed_q6_k,false},
    {"q2_k",256,84,dequant_q2_k_f32,dequant_q2_k_f16,embed_q2_k,false},
    {"q3_k",256,110,dequant_q3_k_f32,dequant_q3_k_f16,embed_q3_k,false},
    {"iq4_nl",32,18,dequant_iq4_nl_f32,dequant_iq4_nl_f16,embed_iq4_nl,false},
    {"iq4_xs",256,136,dequant_iq4_xs_f32,dequant_iq4_xs_f16,embed_iq4_xs,false},
    {"iq2_xxs",256,66,dequant_iq2_xxs_f32,dequant_iq2_xxs_f16,embed_iq2_xxs,false},
    {"iq2_xs",256,74,dequant_iq2_xs_f32,dequant_iq2_xs_f16,embed_iq2_xs,false},
    {"iq2_s",256,82,dequant_iq2_s_f32,dequant_iq2_s_f16,embed_iq2_s,false},
    {"iq3_xxs",256,98,dequant_iq3_xxs_f32,dequant_iq3_xxs_f16,embed_iq3_xxs,false},
    {"iq3_s",256,110,dequant_iq3_s_f32,dequant_iq3_s_f16,embed_iq3_s,false},
    {"iq1_s",256,50,dequant_iq1_s_f32,dequant_iq1_s_f16,embed_iq1_s,false},
    {"iq1_m",256,56,dequant_iq1_m_f32,dequant_iq1_m_f16,embed_iq1_m,false},
    {"tq1_0",256,54,dequant_tq1_0_f32,dequant_tq1_0_f16,embed_tq1_0,false},
    {"tq2_0",256,66,dequant_tq2_0_f32,dequant_tq2_0_f16,embed_tq2_0,false},
    {"f32",1,4,dequant_f32_f32,dequant_f32_f16,embed_f32,true},
    {"f16",1,2,dequant_f16_f32,dequant_f16_f16,embed_f16,true},
    {"bf16",1,2,dequant_bf16_f32,dequant_bf16_f16,embed_bf16,true},
  };
  std::mt19937 rng(42); std::uniform_real_distribution<float> Ud(-1,1); auto U = [&](std::mt19937&){ return Ud(rng); };
  
  for (auto& t : types) {
    const int rows = 5, cols = 512; // 5 rows: odd block counts per matrix for the 2-aligned types
    long long nel = (long long)rows*cols, nblk = nel / t.bs;
    std::vector<uint8_t> w(nblk*t.bb + 64);
    for (auto& x : w) x = rng();
    for (long long b=0;b<nblk;b++) sane_scales(t.name, &w[b*t.bb], [&]{ return U(rng); });
    std::vector<float> want(nel), got(nel, NAN), emb(3*cols, NAN); std::vector<unsigned short> got16(nel);
    for (long long b=0;b<nblk;b++) ref(t.name, &w[b*t.bb], &want[b*t.bs]);
    long long count = t.isfloat ? nel : nblk;
    launch1(7, 1, 64, [&]{ t.d32(w.data(), got.data(), count); });
    launch1(7, 1, 64, [&]{ t.d16(w.data(), got16.data(), count); });
    unsigned tok[3] = {4, 0, 2};
    launch1((cols/16 + 127)/128, 3, 128, [&]{ t.emb(w.data(), tok, emb.data(), cols, 3); });
    int bad = 0;
    for (long long i=0;i<nel;i++) {
      if (memcmp(&got[i], &want[i], 4)) { if (bad++ < 3) printf("  %s f32 [%lld] got %g want %g\n", t.name, i, got[i], want[i]); }
      if (got16[i] != emu_f2h(want[i])) { if (bad++ < 3) printf("  %s f16 [%lld]\n", t.name, i); }
    }
    for (int i=0;i<3;i++) for (int c=0;c<cols;c++) if (memcmp(&emb[i*cols+c], &want[tok[i]*cols+c], 4)) { if (bad++<3) printf("  %s embed [%d,%d]\n", t.name, i, c); }
    printf("dequant/embed %-26s %s\n", t.name, bad ? "FAIL" : "ok (bit-exact f32, f16, embed)"); fails += bad != 0;
  }
  }
void check(const char* what, double err, double tol) { bool ok = err <= tol; printf("%-40s err %.3g (tol %.3g) %s\n", what, err, tol, ok ? "ok" : "FAIL"); fails += !ok; }
// The larger of two errors, NaN (a NaN result) winning, where std::max(err, NaN) keeps err.
static double worse(double err, double e) { return std::isnan(err) || std::isnan(e) ? NAN : std::max(err, e); }

// Random blocks of a type, with scales of a sane size, and their weights as the reference decodes them.
static std::vector<uint8_t> random_weights(const char* name, int bs, int bb, long long nel, std::vector<float>& W) {
  long long nblk = nel / bs;
  std::vector<uint8_t> w(nblk * bb + 64);
  for (auto& x : w) x = rng();
  for (long long b=0;b<nblk;b++) sane_scales(name, &w[b*bb], []{ return U(); });
  W.assign(nel, 0); for (long long b=0;b<nblk;b++) ref(name, &w[b*bb], &W[b*bs]);
  return w;
}

void test_matvec(const char* name, int bs, int bb, MV mv, MV3 mv3, MV mva, int rows, int cols, int n) {
  long long nel = (long long)rows * cols;
  std::vector<float> W;
  std::vector<uint8_t> w = random_weights(name, bs, bb, nel, W);
  std::vector<float> x((size_t)n*cols), y((size_t)n*rows, NAN);
  for (auto& v : x) v = U();
  launch({CTAS(rows),1,1}, MV_BLOCK, [&]{ mv(w.data(), x.data(), y.data(), rows, cols, n); });
  double err = 0;
  for (int j=0;j<n;j++) for (int r=0;r<rows;r++) { double s2=0, sa=0; for (int c=0;c<cols;c++){ double p=(double)W[(size_t)r*cols+c]*x[(size_t)j*cols+c]; s2+=p; sa+=fabs(p);} 
    double e = fabs(y[(size_t)j*rows+r]-s2)/ (sa>0?sa:1); err = worse(err, e); }
  char buf[100]; snprintf(buf, 100, "matvec_%s rows %d cols %d n %d", name, rows, cols, n); check(buf, err, 1e-6);
  if (n > 1) {
    // Past 8 vectors the kernel takes them in slices: each vector's result is the one it gets alone.
    double d1 = 0;
    for (int j = 0; j < n; j++) {
      std::vector<float> y1(rows, NAN);
      launch({CTAS(rows),1,1}, MV_BLOCK, [&]{ mv(w.data(), x.data() + (size_t)j*cols, y1.data(), rows, cols, 1); });
      if (memcmp(y1.data(), y.data() + (size_t)j*rows, rows * 4) != 0) d1 = 1;
    }
    snprintf(buf, 100, "matvec_%s n %d = n 1 each (bit-exact)", name, n); check(buf, d1, 0);
  }
  // The fused launch: the rows cut into three matrices (the last empty when rows = 2) give the
  // single launch's outputs bit for bit.
  int part[3] = {(rows + 2) / 3, rows / 3, rows - (rows + 2) / 3 - rows / 3};
  if (rows == 2) part[0] = 1, part[1] = 1, part[2] = 0;
  size_t row_bytes = (size_t)cols / bs * bb;
  const unsigned char* wp[3]; std::vector<float> yp[3]; size_t off = 0;
  for (int i = 0; i < 3; i++) { wp[i] = w.data() + off * row_bytes; yp[i].assign((size_t)n * std::max(part[i], 1), NAN); off += part[i]; }
  unsigned grid = 0; for (int i = 0; i < 3; i++) grid += CTAS(part[i]);
  launch({grid,1,1}, MV_BLOCK, [&]{ mv3(wp[0], yp[0].data(), part[0], wp[1], yp[1].data(), part[1],
                                         part[2] ? wp[2] : wp[0], part[2] ? yp[2].data() : yp[0].data(), part[2],
                                         x.data(), cols, n, nullptr, nullptr, nullptr, nullptr, 0, 0); });
  double diff = 0; off = 0;
  for (int i = 0; i < 3; i++) { for (int j=0;j<n;j++) for (int r=0;r<part[i];r++) { float a = yp[i][(size_t)j*part[i]+r], b = y[(size_t)j*rows+off+r];
      if (memcmp(&a, &b, 4) != 0) diff = std::max(diff, std::isnan(a) ? 1e9 : fabs((double)a - b) + 1e-30); } off += part[i]; }
  snprintf(buf, 100, "matvec3_%s rows %d+%d+%d n %d (bit-exact)", name, part[0], part[1], part[2], n); check(buf, diff, 0);
  // The accumulating launch: y0 + the product, rounded once, as matvec then add.
  std::vector<float> acc((size_t)n * rows);
  for (auto& v : acc) v = U();
  std::vector<float> want = acc;
  for (size_t i = 0; i < want.size(); i++) want[i] = __fadd_rn(want[i], y[i]);
  launch({CTAS(rows),1,1}, MV_BLOCK, [&]{ mva(w.data(), x.data(), acc.data(), rows, cols, n); });
  diff = memcmp(acc.data(), want.data(), acc.size() * 4) == 0 ? 0 : 1;
  snprintf(buf, 100, "matvec_add_%s rows %d n %d (bit-exact)", name, rows, n); check(buf, diff, 0);
}

// The single-vector kernels (v1_*) against the general ones given one vector, bit for bit.
void test_v1(const char* name, int bs, int bb, MV mv, MV3 mv3, MV mva, MVS mvs, MV mv1, MV3 mv31, MV mva1, MVS mvs1, int rows, int cols) {
  std::vector<float> W;
  std::vector<uint8_t> w = random_weights(name, bs, bb, (long long)rows * cols, W);
  std::vector<uint8_t> w2 = random_weights(name, bs, bb, (long long)rows * cols, W);
  std::vector<float> x(cols), y0(rows);
  for (auto& v : x) v = U();
  for (auto& v : y0) v = U();
  const unsigned grid = CTAS(rows);
  auto same = [](const std::vector<float>& a, const std::vector<float>& b) { return memcmp(a.data(), b.data(), a.size() * 4) == 0; };
  std::vector<float> a(rows, NAN), b(rows, NAN), a2(rows, NAN), b2(rows, NAN);
  bool ok = true;
  launch({grid,1,1}, MV_BLOCK, [&]{ mv(w.data(), x.data(), a.data(), rows, cols, 1); });
  launch({grid,1,1}, MV_BLOCK, [&]{ mv1(w.data(), x.data(), b.data(), rows, cols, 1); });
  ok = ok && same(a, b);
  a = y0, b = y0;
  launch({grid,1,1}, MV_BLOCK, [&]{ mva(w.data(), x.data(), a.data(), rows, cols, 1); });
  launch({grid,1,1}, MV_BLOCK, [&]{ mva1(w.data(), x.data(), b.data(), rows, cols, 1); });
  ok = ok && same(a, b);
  launch({2 * grid,1,1}, MV_BLOCK, [&]{ mv3(w.data(), a.data(), rows, w2.data(), a2.data(), rows, w.data(), a.data(), 0, x.data(), cols, 1, nullptr, nullptr, nullptr, nullptr, 0, 0); });
  launch({2 * grid,1,1}, MV_BLOCK, [&]{ mv31(w.data(), b.data(), rows, w2.data(), b2.data(), rows, w.data(), b.data(), 0, x.data(), cols, 1, nullptr, nullptr, nullptr, nullptr, 0, 0); });
  ok = ok && same(a, b) && same(a2, b2);
  launch({grid,1,1}, MV_BLOCK, [&]{ mvs(w.data(), w2.data(), x.data(), a.data(), a2.data(), rows, cols, 1); });
  launch({grid,1,1}, MV_BLOCK, [&]{ mvs1(w.data(), w2.data(), x.data(), b.data(), b2.data(), rows, cols, 1); });
  ok = ok && same(a, b) && same(a2, b2);
  char buf[100]; snprintf(buf, 100, "v1_matvec*_%s rows %d = n 1 (bit-exact)", name, rows); check(buf, ok ? 0 : 1, 0);
}

// The residual's product of one vector with the RMSNorm after it, against matvec_add then
// rmsnorm, bit for bit: the norm by the launch's last CTA (every other launch runs the CTAs in
// reverse order), the counter back at 0 after each launch. `rows` is the norm's width.
void test_add_norm(const char* name, int bs, int bb, MV mva, MVN mvan, int rows, int cols) {
  std::vector<float> W;
  std::vector<uint8_t> w = random_weights(name, bs, bb, (long long)rows * cols, W);
  std::vector<float> x(cols), y0(rows), g(rows);
  for (auto& v : x) v = U();
  for (auto& v : y0) v = U() * 3;
  for (auto& v : g) v = U();
  const unsigned grid = CTAS(rows);
  std::vector<float> want_y = y0, want(rows, NAN);
  launch({grid,1,1}, MV_BLOCK, [&]{ mva(w.data(), x.data(), want_y.data(), rows, cols, 1); });
  launch({1,1,1}, {256,1,1}, [&]{ rmsnorm(want.data(), want_y.data(), g.data(), rows, 1e-5f, 1); });
  double diff = 0;
  int counter = 0;
  for (int rep = 0; rep < 2; rep++) {
    std::vector<float> y = y0, out(rows, NAN);
    launch({grid,1,1}, MV_BLOCK, [&]{ mvan(w.data(), x.data(), y.data(), rows, cols, out.data(), g.data(), 1e-5f, &counter); });
    if (memcmp(y.data(), want_y.data(), y.size() * 4) || memcmp(out.data(), want.data(), out.size() * 4) || counter) diff = 1;
  }
  char buf[100]; snprintf(buf, 100, "matvec_add_norm_%s rows %d (bit-exact)", name, rows); check(buf, diff, 0);
}

// The fused launches against the separate ones they replace, bit for bit: matvec3 given
// positions (q, k, v with RoPE and the cache writes) against matvec3 then rope_store, and
// matvec_swiglu against matvec3 of gate and up then silu_mul. n past MV_MAX_N takes slices.
void test_fused(const char* name, int bs, int bb, MV3 mv3, MVS mvs, int cols, int n, int half) {
  const int nh = 4, nk = 2, hd = 8, qr = nh * hd, kr = nk * hd;
  std::vector<float> Wq, Wk, Wv;
  std::vector<uint8_t> wq = random_weights(name, bs, bb, (long long)qr * cols, Wq);
  std::vector<uint8_t> wk = random_weights(name, bs, bb, (long long)kr * cols, Wk);
  std::vector<uint8_t> wv = random_weights(name, bs, bb, (long long)kr * cols, Wv);
  std::vector<float> x((size_t)n * cols);
  for (auto& v : x) v = U();
  std::vector<int> pos(n); for (int j = 0; j < n; j++) pos[j] = j * 37 % 5000;
  std::vector<float> invf(hd / 2); for (int i = 0; i < hd / 2; i++) invf[i] = (float)pow(500000.0, -2.0 * i / hd);
  // Cache slots: row j to slot n - 1 - j, of floats, or of f16 bits in the first half of the
  // buffer's bytes (the rest stays NaN in both runs).
  auto slots = [&](std::vector<float>& c) { std::vector<void*> p(n); for (int j = 0; j < n; j++) p[j] = half ? (void*)((unsigned short*)c.data() + (size_t)(n - 1 - j) * kr) : (void*)(c.data() + (size_t)(n - 1 - j) * kr); return p; };
  std::vector<float> q1((size_t)n*qr, NAN), k1((size_t)n*kr, NAN), v1((size_t)n*kr, NAN), kc1((size_t)n*kr, NAN), vc1((size_t)n*kr, NAN);
  std::vector<float> q2 = q1, k2 = k1, v2 = v1, kc2 = kc1, vc2 = vc1;
  std::vector<void*> kp1 = slots(kc1), vp1 = slots(vc1), kp2 = slots(kc2), vp2 = slots(vc2);
  const unsigned grid = CTAS(qr) + 2 * CTAS(kr);
  launch({grid,1,1}, MV_BLOCK, [&]{ mv3(wq.data(), q1.data(), qr, wk.data(), k1.data(), kr, wv.data(), v1.data(), kr, x.data(), cols, n,
                                        nullptr, nullptr, nullptr, nullptr, 0, 0); });
  launch({(unsigned)(((nh+nk)*hd/2+127)/128),(unsigned)n,1}, {128,1,1}, [&]{ rope_store(q1.data(), k1.data(), v1.data(), pos.data(), invf.data(), kp1.data(), vp1.data(), n, nh, nk, hd, half); });
  launch({grid,1,1}, MV_BLOCK, [&]{ mv3(wq.data(), q2.data(), qr, wk.data(), k2.data(), kr, wv.data(), v2.data(), kr, x.data(), cols, n,
                                        pos.data(), invf.data(), kp2.data(), vp2.data(), hd, half); });
  auto same = [](const std::vector<float>& a, const std::vector<float>& b) { return memcmp(a.data(), b.data(), a.size() * 4) == 0; };
  char buf[120];
  snprintf(buf, 120, "matvec3_%s + RoPE, %s cache n %d (bit-exact)", name, half ? "f16" : "f32", n);
  check(buf, same(q1, q2) && same(k1, k2) && same(v1, v2) && same(kc1, kc2) && same(vc1, vc2) ? 0 : 1, 0);
  // Split as for a Q4_K_M layer whose v has another type: q and k, then v alone (the third
  // matrix of a launch whose first two have no rows).
  std::vector<float> q3 = q1, k3 = k1, v3 = v1, kc3 = kc1, vc3 = vc1;
  for (auto* b : {&q3, &k3, &v3, &kc3, &vc3}) std::fill(b->begin(), b->end(), NAN);
  std::vector<void*> kp3 = slots(kc3), vp3 = slots(vc3);
  launch({CTAS(qr) + CTAS(kr),1,1}, MV_BLOCK, [&]{ mv3(wq.data(), q3.data(), qr, wk.data(), k3.data(), kr, wq.data(), q3.data(), 0, x.data(), cols, n,
                                                pos.data(), invf.data(), kp3.data(), vp3.data(), hd, half); });
  launch({CTAS(kr),1,1}, MV_BLOCK, [&]{ mv3(wv.data(), v3.data(), 0, wv.data(), v3.data(), 0, wv.data(), v3.data(), kr, x.data(), cols, n,
                                        pos.data(), invf.data(), kp3.data(), vp3.data(), hd, half); });
  snprintf(buf, 120, "matvec3_%s + RoPE, %s cache, q k then v n %d (bit-exact)", name, half ? "f16" : "f32", n);
  check(buf, same(q3, q2) && same(k3, k2) && same(v3, v2) && same(kc3, kc2) && same(vc3, vc2) ? 0 : 1, 0);
  // SwiGLU: 5 rows (the last CTA's second row past the end).
  const int fr = 5;
  std::vector<float> Wg, Wu;
  std::vector<uint8_t> wg = random_weights(name, bs, bb, (long long)fr * cols, Wg);
  std::vector<uint8_t> wu = random_weights(name, bs, bb, (long long)fr * cols, Wu);
  std::vector<float> g1((size_t)n*fr, NAN), u1((size_t)n*fr, NAN), g2((size_t)n*fr, NAN), u2((size_t)n*fr, NAN);
  launch({2 * CTAS(fr),1,1}, MV_BLOCK, [&]{ mv3(wg.data(), g1.data(), fr, wu.data(), u1.data(), fr, wg.data(), g1.data(), 0, x.data(), cols, n,
                                                        nullptr, nullptr, nullptr, nullptr, 0, 0); });
  launch({2,1,1}, {64,1,1}, [&]{ silu_mul(g1.data(), u1.data(), (long long)n * fr); });
  launch({CTAS(fr),1,1}, MV_BLOCK, [&]{ mvs(wg.data(), wu.data(), x.data(), g2.data(), u2.data(), fr, cols, n); });
  snprintf(buf, 120, "matvec_swiglu_%s n %d (bit-exact)", name, n);
  check(buf, same(g1, g2) ? 0 : 1, 0);
}

typedef void (*TC)(const unsigned char*, const unsigned short*, float*, int, int, int);
// The activations of `n` rows as the host gives them to the tensor-core products: f16, and for
// float weights (`split`) the remainders after them (f32_to_f16 with `split`).
std::vector<unsigned short> tc_input(const std::vector<float>& x, bool split) {
  std::vector<unsigned short> xh(x.size() * (split ? 2 : 1));
  launch({4,1,1}, {64,1,1}, [&]{ f32_to_f16(x.data(), xh.data(), (long long)x.size(), split); });
  return xh;
}

// The tensor-core products: against the f16-rounded weights and the activations they are given
// (f16, or f16 pairs for float weights) summed in double (within 1e-6 of sum |w x|: f32
// accumulation), each vector's result the one it gets alone (bit for bit, across the 32-vector
// slices too), and the accumulating launch as the product then add.
void test_tc(const char* name, int bs, int bb, TC tc, TC tca, int rows, int cols, int n) {
  const bool split = bs == 1;  // the float types (block size 1 here)
  std::vector<float> W;
  std::vector<uint8_t> w = random_weights(name, bs, bb, (long long)rows * cols, W);
  std::vector<float> x((size_t)n*cols), y((size_t)n*rows, NAN);
  for (auto& v : x) v = U();
  std::vector<unsigned short> xh = tc_input(x, split);
  // The input's largest error relative to max(|x|, 1/8): 2^-11, or 2^-22 when split (2^-25
  // absolute, the remainders of the smallest being f16 subnormals).
  double rounding = 0;
  for (size_t i = 0; i < x.size(); i++) {
    const double in = emu_h2f(xh[i]) + (split ? (double)emu_h2f(xh[x.size() + i]) : 0.0);
    if (split && emu_h2f(xh[i]) != emu_h2f(emu_f2h(x[i]))) rounding = 1;  // hi must be f16(x)
    rounding = worse(rounding, fabs(in - x[i]) / std::max(fabs((double)x[i]), 0.125));
  }
  const int bits = split ? 22 : 11;
  char buf[100]; snprintf(buf, 100, "tc_matvec_%s input within 2^-%d", name, bits);
  check(buf, rounding, ldexp(1.0, -bits));
  const unsigned grid = (rows + TC_ROWS - 1) / TC_ROWS;
  launch({grid,1,1}, {32,4,1}, [&]{ tc(w.data(), xh.data(), y.data(), rows, cols, n); });
  double err = 0;
  for (int j=0;j<n;j++) for (int r=0;r<rows;r++) { double s2=0, sa=0;
    for (int c=0;c<cols;c++){ const size_t i = (size_t)j*cols+c;
      const double in = emu_h2f(xh[i]) + (split ? (double)emu_h2f(xh[x.size() + i]) : 0.0);
      double p=(double)emu_h2f(emu_f2h(W[(size_t)r*cols+c]))*in; s2+=p; sa+=fabs(p);}
    double e = fabs(y[(size_t)j*rows+r]-s2)/ (sa>0?sa:1); err = worse(err, e); }
  snprintf(buf, 100, "tc_matvec_%s rows %d cols %d n %d", name, rows, cols, n); check(buf, err, 1e-6);
  double d1 = 0;
  for (int j = 0; j < n; j++) {
    std::vector<float> y1(rows, NAN);
    std::vector<unsigned short> xj = tc_input(std::vector<float>(x.begin() + (size_t)j*cols, x.begin() + (size_t)(j+1)*cols), split);
    launch({grid,1,1}, {32,4,1}, [&]{ tc(w.data(), xj.data(), y1.data(), rows, cols, 1); });
    if (memcmp(y1.data(), y.data() + (size_t)j*rows, rows * 4) != 0) d1 = 1;
  }
  snprintf(buf, 100, "tc_matvec_%s n %d = n 1 each (bit-exact)", name, n); check(buf, d1, 0);
  std::vector<float> acc((size_t)n * rows);
  for (auto& v : acc) v = U();
  std::vector<float> want = acc;
  for (size_t i = 0; i < want.size(); i++) want[i] = __fadd_rn(want[i], y[i]);
  launch({grid,1,1}, {32,4,1}, [&]{ tca(w.data(), xh.data(), acc.data(), rows, cols, n); });
  snprintf(buf, 100, "tc_matvec_add_%s rows %d n %d (bit-exact)", name, rows, n);
  check(buf, memcmp(acc.data(), want.data(), acc.size() * 4) == 0 ? 0 : 1, 0);
}

void test_attention(int n_heads, int n_kv, int hd, int chunk_len, std::vector<int> np) {
  int n = np.size(), maxp = *std::max_element(np.begin(), np.end()), ctx = maxp + 5;
  int kv_dim = n_kv*hd; int max_chunks = (ctx + chunk_len - 1) / chunk_len;
  std::vector<std::vector<float>> K(n), V(n);
  std::vector<const float*> kp(n), vp(n);
  for (int j=0;j<n;j++){ K[j].resize((size_t)ctx*kv_dim); V[j].resize((size_t)ctx*kv_dim); for(auto&v:K[j]) v=U()*2; for(auto&v:V[j]) v=U();
    for (int t=np[j]; t<ctx; t++) for (int c=0;c<kv_dim;c++) { K[j][(size_t)t*kv_dim+c]=NAN; V[j][(size_t)t*kv_dim+c]=NAN; } // never read
    kp[j]=K[j].data(); vp[j]=V[j].data(); }
  std::vector<float> q((size_t)n*n_heads*hd), out((size_t)n*n_heads*hd, NAN);
  for (auto& v : q) v = U()*2;
  std::vector<float> po((size_t)n*n_heads*max_chunks*hd, NAN), pml((size_t)n*n_heads*max_chunks*2, NAN);
  float scale = 1.0f/sqrtf((float)hd);
  launch({(unsigned)max_chunks,(unsigned)n_kv,(unsigned)n}, {128,1,1}, [&]{ attention_partial(q.data(), kp.data(), vp.data(), np.data(), po.data(), pml.data(), n_heads, n_kv, hd, scale, chunk_len, max_chunks); });
  launch({(unsigned)n_heads,(unsigned)n,1}, {128,1,1}, [&]{ attention_combine(po.data(), pml.data(), np.data(), out.data(), n_heads, hd, chunk_len, max_chunks); });
  // The one-launch form (the last CTA of each row and kv head combines), twice over the same
  // counters: the same bits as the two launches, and every counter back at zero after each.
  std::vector<int> counters((size_t)n * n_kv, 0);
  bool one_launch = true;
  for (int rep = 0; rep < 2; rep++) {
    std::vector<float> po1(po.size(), NAN), pml1(pml.size(), NAN), out1(out.size(), NAN);
    launch({(unsigned)max_chunks,(unsigned)n_kv,(unsigned)n}, {128,1,1}, [&]{ attention(q.data(), kp.data(), vp.data(), np.data(), po1.data(), pml1.data(), n_heads, n_kv, hd, scale, chunk_len, max_chunks, counters.data(), out1.data()); });
    one_launch = one_launch && memcmp(out1.data(), out.data(), out.size() * 4) == 0;
    for (int c : counters) one_launch = one_launch && c == 0;
  }
  double err = 0; int G = n_heads/n_kv;
  for (int j=0;j<n;j++) for (int h=0;h<n_heads;h++) { int g=h/G; std::vector<double> s(np[j]); double m=-1e300;
    for (int t=0;t<np[j];t++){ double d=0; for(int c=0;c<hd;c++) d+=(double)q[((size_t)j*n_heads+h)*hd+c]*K[j][(size_t)t*kv_dim+g*hd+c]; s[t]=d*scale; m=std::max(m,s[t]); }
    double sum=0; for (auto& v : s){ v=exp(v-m); sum+=v; }
    for (int c=0;c<hd;c++){ double o=0; for(int t=0;t<np[j];t++) o+=s[t]/sum*V[j][(size_t)t*kv_dim+g*hd+c]; double got=out[((size_t)j*n_heads+h)*hd+c]; double e=fabs(got-o); err = worse(err, e);} }
  char buf[120]; snprintf(buf, 120, "attention heads %d/%d hd %d chunk %d n %d", n_heads, n_kv, hd, chunk_len, n); check(buf, err, 2e-6);
  snprintf(buf, 120, "  in one launch (bit-exact, counters reset)"); check(buf, one_launch ? 0 : 1, 0);
  // f16 caches: the keys and values rounded to f16 (NaN stays NaN), read by the `_f16` forms,
  // give the bits the f32 forms give on the same values widened.
  std::vector<std::vector<unsigned short>> Kh(n), Vh(n);
  std::vector<const unsigned short*> khp(n), vhp(n);
  for (int j=0;j<n;j++) {
    for (auto& v : K[j]) { Kh[j].push_back(emu_f2h(v)); v = emu_h2f(Kh[j].back()); }
    for (auto& v : V[j]) { Vh[j].push_back(emu_f2h(v)); v = emu_h2f(Vh[j].back()); }
    khp[j] = Kh[j].data(); vhp[j] = Vh[j].data();
  }
  std::vector<float> want(out.size(), NAN), got(out.size(), NAN), got1(out.size(), NAN);
  launch({(unsigned)max_chunks,(unsigned)n_kv,(unsigned)n}, {128,1,1}, [&]{ attention_partial(q.data(), kp.data(), vp.data(), np.data(), po.data(), pml.data(), n_heads, n_kv, hd, scale, chunk_len, max_chunks); });
  launch({(unsigned)n_heads,(unsigned)n,1}, {128,1,1}, [&]{ attention_combine(po.data(), pml.data(), np.data(), want.data(), n_heads, hd, chunk_len, max_chunks); });
  launch({(unsigned)max_chunks,(unsigned)n_kv,(unsigned)n}, {128,1,1}, [&]{ attention_partial_f16(q.data(), khp.data(), vhp.data(), np.data(), po.data(), pml.data(), n_heads, n_kv, hd, scale, chunk_len, max_chunks); });
  launch({(unsigned)n_heads,(unsigned)n,1}, {128,1,1}, [&]{ attention_combine(po.data(), pml.data(), np.data(), got.data(), n_heads, hd, chunk_len, max_chunks); });
  launch({(unsigned)max_chunks,(unsigned)n_kv,(unsigned)n}, {128,1,1}, [&]{ attention_f16(q.data(), khp.data(), vhp.data(), np.data(), po.data(), pml.data(), n_heads, n_kv, hd, scale, chunk_len, max_chunks, counters.data(), got1.data()); });
  bool same = memcmp(got.data(), want.data(), want.size() * 4) == 0 && memcmp(got1.data(), want.data(), want.size() * 4) == 0;
  for (int c : counters) same = same && c == 0;
  snprintf(buf, 120, "  f16 caches, both forms (bit-exact against f32 caches of the same values)"); check(buf, same ? 0 : 1, 0);
}

// The tensor-core prompt attention over f16 caches: sequences `seqs` of (first position, rows),
// each row at the next position (n_past = position + 1), in tiles of TCA_VECS / group
// consecutive rows as the host makes them. Against a double-precision softmax of the f16
// keys and values and the f32 queries: the kernel carries queries and probabilities as two
// f16 terms each (within 2^-22 of f32), so 1e-6 of values in [-1, 1] holds, where one f16
// rounding of either misses it. chunk_len 0: one chunk, the kernel writes the output;
// otherwise chunks of chunk_len positions, merged by attention_combine.
void test_attention_tc(int n_heads, int n_kv, int hd, std::vector<std::pair<int, int>> seqs, int chunk_len) {
  const int G = n_heads / n_kv, per = 64 / G, kv_dim = n_kv * hd;
  std::vector<int> np, tiles, seq_of;
  for (int s = 0; s < (int)seqs.size(); s++) {
    const int row0 = (int)np.size();
    for (int r = 0; r < seqs[s].second; r++) { np.push_back(seqs[s].first + r + 1); seq_of.push_back(s); }
    for (int r = 0; r < seqs[s].second; r += per) { tiles.push_back(row0 + r); tiles.push_back(std::min(per, seqs[s].second - r)); }
  }
  const int n = np.size(), n_tiles = tiles.size() / 2;
  std::vector<std::vector<unsigned short>> K(seqs.size()), V(seqs.size());
  std::vector<const unsigned short*> kp(n), vp(n);
  for (size_t s = 0; s < seqs.size(); s++) {
    const int used = seqs[s].first + seqs[s].second, ctx = used + 3;
    for (size_t i = 0; i < (size_t)ctx * kv_dim; i++) {
      const bool live = (int)(i / kv_dim) < used;  // past the last row's position: never read
      K[s].push_back(emu_f2h(live ? U() * 2 : NAN)); V[s].push_back(emu_f2h(live ? U() : NAN));
    }
  }
  for (int j = 0; j < n; j++) { kp[j] = K[seq_of[j]].data(); vp[j] = V[seq_of[j]].data(); }
  std::vector<float> q((size_t)n * n_heads * hd), out(q.size(), NAN);
  for (auto& v : q) v = U() * 2;
  const float scale = 1.0f / sqrtf((float)hd);
  const int max_np = *std::max_element(np.begin(), np.end());
  const int max_chunks = chunk_len ? (max_np + chunk_len - 1) / chunk_len : 1;
  std::vector<float> po((size_t)n * n_heads * max_chunks * hd, NAN), pml((size_t)n * n_heads * max_chunks * 2, NAN);
  launch({(unsigned)n_tiles, (unsigned)n_kv, (unsigned)max_chunks}, {128, 1, 1}, [&]{ attention_tc_f16(q.data(), kp.data(), vp.data(), np.data(), po.data(), pml.data(), n_heads, n_kv, hd, scale, chunk_len ? chunk_len : max_np, max_chunks, tiles.data(), out.data()); });
  if (max_chunks > 1)
    launch({(unsigned)n_heads, (unsigned)n, 1}, {128, 1, 1}, [&]{ attention_combine(po.data(), pml.data(), np.data(), out.data(), n_heads, hd, chunk_len, max_chunks); });
  double err = 0;
  for (int j = 0; j < n; j++) for (int h = 0; h < n_heads; h++) {
    const int g = h / G; const auto &Kj = K[seq_of[j]], &Vj = V[seq_of[j]];
    std::vector<double> sc(np[j]); double m = -1e300;
    for (int t = 0; t < np[j]; t++) { double d = 0; for (int c = 0; c < hd; c++) d += (double)q[((size_t)j*n_heads+h)*hd+c] * emu_h2f(Kj[(size_t)t*kv_dim+g*hd+c]); sc[t] = d * scale; m = std::max(m, sc[t]); }
    double sum = 0; for (auto& v : sc) { v = exp(v - m); sum += v; }
    for (int c = 0; c < hd; c++) { double o = 0; for (int t = 0; t < np[j]; t++) o += sc[t] / sum * emu_h2f(Vj[(size_t)t*kv_dim+g*hd+c]); err = worse(err, fabs(out[((size_t)j*n_heads+h)*hd+c] - o)); }
  }
  char buf[120]; snprintf(buf, 120, "attention_tc_f16 heads %d/%d hd %d rows %d tiles %d chunks %d", n_heads, n_kv, hd, n, n_tiles, max_chunks); check(buf, err, 1e-6);
}

void test_ops() {
  int d = 1000, n = 3; std::vector<float> x(n*d), g(d), out(n*d); for (auto& v : x) v = U()*3; for (auto& v : g) v = U();
  launch({(unsigned)n,1,1}, {256,1,1}, [&]{ rmsnorm(out.data(), x.data(), g.data(), d, 1e-5f, n); });
  double err = 0; for (int j=0;j<n;j++){ double ss=0; for(int c=0;c<d;c++) ss+=(double)x[j*d+c]*x[j*d+c]; float inv=(float)(1.0/sqrt(ss/d+(double)1e-5f));
    for(int c=0;c<d;c++){ float want=g[c]*(x[j*d+c]*inv); err=worse(err,(double)fabs(out[j*d+c]-want)); } }
  check("rmsnorm (bit-exact)", err, 0);
  // in place
  std::vector<float> x2 = x; launch({(unsigned)n,1,1}, {256,1,1}, [&]{ rmsnorm(x2.data(), x2.data(), g.data(), d, 1e-5f, n); });
  err = 0; for (int i=0;i<n*d;i++) err=worse(err,(double)fabs(x2[i]-out[i])); check("rmsnorm in place", err, 0);
  // rope_store: q of 4 heads and k of 2 rotated (the CPU's roundings: angle in f32, sin and cos
  // in f64 rounded to f32), then the rotated k and v in each row's cache slot (rows 0, 1, 2 to
  // slots 0, 2, 1).
  int nh = 4, nk = 2, hd = 64, kvd = nk * hd; std::vector<int> pos = {0, 17, 100000};
  std::vector<float> invf(hd/2); for (int i=0;i<hd/2;i++) invf[i] = (float)pow(500000.0, -2.0*i/hd);
  std::vector<float> q(n*nh*hd), k(n*kvd), v(n*kvd), kc(n*kvd, NAN), vc(n*kvd, NAN);
  for (auto& e : q) e = U(); for (auto& e : k) e = U(); for (auto& e : v) e = U();
  const std::vector<float> q0 = q, k0 = k;
  std::vector<float*> kr, vr; for (int j=0;j<n;j++) { kr.push_back(kc.data()+(j*2%n)*kvd); vr.push_back(vc.data()+(j*2%n)*kvd); }
  std::vector<void*> krv(kr.begin(), kr.end()), vrv(vr.begin(), vr.end());
  launch({(unsigned)(((nh+nk)*hd/2+127)/128),(unsigned)n,1}, {128,1,1}, [&]{ rope_store(q.data(), k.data(), v.data(), pos.data(), invf.data(), krv.data(), vrv.data(), n, nh, nk, hd, 0); });
  auto rotated = [&](const std::vector<float>& x0, const std::vector<float>& x, int heads) {
    double e = 0;
    for (int j=0;j<n;j++) for (int h=0;h<heads;h++) for (int i=0;i<hd/2;i++){ float a=(float)pos[j]*invf[i]; float sn=(float)sin((double)a), cs=(float)cos((double)a);
      size_t o = (size_t)j*heads*hd+h*hd+2*i; float a0=x0[o], a1=x0[o+1]; float w0=a0*cs-a1*sn, w1=a0*sn+a1*cs;
      e=worse(e,(double)fabs(x[o]-w0)); e=worse(e,(double)fabs(x[o+1]-w1)); }
    return e;
  };
  check("rope_store: q rotated (bit-exact)", rotated(q0, q, nh), 0);
  check("rope_store: k rotated (bit-exact)", rotated(k0, k, nk), 0);
  err = 0; for (int j=0;j<n;j++) for (int c=0;c<kvd;c++){ err=worse(err,(double)fabs(kr[j][c]-k[j*kvd+c])); err=worse(err,(double)fabs(vr[j][c]-v[j*kvd+c])); }
  check("rope_store: k and v cached", err, 0);
  {
    // Into f16 caches: the same rotations, and each cached key and value the f32 one rounded to
    // nearest (emu_f2h, the `half` crate's rounding).
    std::vector<float> q2 = q0, k2 = k0;
    std::vector<unsigned short> kh(n*kvd, 0x7E00), vh(n*kvd, 0x7E00);
    std::vector<void*> khr, vhr; for (int j=0;j<n;j++) { khr.push_back(kh.data()+(j*2%n)*kvd); vhr.push_back(vh.data()+(j*2%n)*kvd); }
    launch({(unsigned)(((nh+nk)*hd/2+127)/128),(unsigned)n,1}, {128,1,1}, [&]{ rope_store(q2.data(), k2.data(), v.data(), pos.data(), invf.data(), khr.data(), vhr.data(), n, nh, nk, hd, 1); });
    bool same = memcmp(q2.data(), q.data(), q.size() * 4) == 0 && memcmp(k2.data(), k.data(), k.size() * 4) == 0;
    for (int j=0;j<n;j++) for (int c=0;c<kvd;c++) {
      same = same && ((unsigned short*)khr[j])[c] == emu_f2h(k[j*kvd+c]) && ((unsigned short*)vhr[j])[c] == emu_f2h(v[j*kvd+c]);
    }
    check("rope_store: k and v cached in f16 (bit-exact)", same ? 0 : 1, 0);
  }
  std::vector<float> ga(1001), up(1001), ga0; for (auto& v : ga) v = U()*8; for (auto& v : up) v = U(); ga0 = ga;
  launch({3,1,1}, {64,1,1}, [&]{ silu_mul(ga.data(), up.data(), 1001); });
  err = 0; for (int i=0;i<1001;i++){ float want = ga0[i]/(1.0f+expf(-ga0[i]))*up[i]; err=worse(err,(double)fabs(ga[i]-want)/std::max(1e-30f,fabsf(want))); }
  check("silu_mul (rel)", err, 1e-6);
  std::vector<float> a1(777), b1(777), a0; for (auto& v : a1) v=U(); for (auto& v : b1) v=U(); a0=a1;
  launch({2,1,1}, {256,1,1}, [&]{ add(a1.data(), b1.data(), 777); });
  err=0; for (int i=0;i<777;i++) err=worse(err,(double)fabs(a1[i]-(a0[i]+b1[i]))); check("add", err, 0);
  std::vector<float> src(5*40), dst(3*40); std::vector<int> idx = {4, 0, 2}; for (auto& v : src) v = U();
  launch({3,1,1}, {32,1,1}, [&]{ gather_rows(dst.data(), src.data(), idx.data(), 40, 3); });
  err=0; for (int j=0;j<3;j++) for(int c=0;c<40;c++) err=worse(err,(double)fabs(dst[j*40+c]-src[idx[j]*40+c])); check("gather_rows", err, 0);
  // Greedy picks against camelid-model's greedy_token: ties (the first wins, across threads
  // and warps), NaNs, a NaN first logit, all -inf, signed zeros, a vocabulary not a multiple of
  // the block.
  for (const int V : {1003, 20011}) {   // one element a thread; three rounds of eight
    const int R = 7;
    std::vector<float> lg((size_t)V * R);
    for (auto& v : lg) v = (float)(rng() % 50) - 40.0f;   // many equal values
    lg[0 * V + 700] = 20; lg[0 * V + 300] = 20;             // row 0: tie, the earlier wins
    lg[1 * V + 5] = NAN; lg[1 * V + 900] = 30;              // row 1: NaN passed over
    lg[2 * V + 0] = NAN; lg[2 * V + 10] = 50;               // row 2: NaN first: 0
    for (int c = 0; c < V; c++) lg[3 * V + c] = -INFINITY;  // row 3: all -inf: 0
    for (int c = 0; c < V; c++) lg[4 * V + c] = NAN;        // row 4: all NaN: 0
    for (int c = 0; c < V; c++) lg[5 * V + c] = c % 2 ? 0.0f : -0.0f; lg[5 * V + 2] = -1; // row 5: zeros equal
    lg[6 * V + V - 1] = 99;                                 // row 6: the last element
    std::vector<unsigned> got(R, 12345);
    launch({R,1,1}, {1024,1,1}, [&]{ argmax_rows(lg.data(), got.data(), V, R); });
    auto greedy = [&](const float* l) -> unsigned {
      if (std::isnan(l[0])) return 0;
      float m = -INFINITY; for (int c = 0; c < V; c++) if (l[c] > m) m = l[c];
      for (int c = 0; c < V; c++) if (l[c] == m) return c;
      return 0;
    };
    double bad = 0;
    for (int j = 0; j < R; j++) if (got[j] != greedy(&lg[(size_t)j * V])) { bad = 1; printf("  argmax row %d got %u want %u\n", j, got[j], greedy(&lg[(size_t)j * V])); }
    char what[64]; snprintf(what, 64, "argmax_rows V %d (= greedy_token)", V); check(what, bad, 0);
  }
}

// With the argument `matvec`, only the decode products' tests (those that depend on the CTA
// shape).
int main(int argc, char** argv) {
  const bool all = argc < 2 || strcmp(argv[1], "matvec") != 0;
  printf("decode products' CTA: %d rows, %d warps\n", MV_ROWS, MV_WARPS);
  if (all) test_dequant();
  if (all) test_ops();
  struct T { const char* name; int bs, bb; MV mv; MV3 mv3; MV mva; MVS mvs; MVN mvan; MV mv1; MV3 mv31; MV mva1; MVS mvs1; };
#define MVT(n, bs, bb) {#n, bs, bb, matvec_##n, matvec3_##n, matvec_add_##n, matvec_swiglu_##n, matvec_add_norm_##n, \
                        v1_matvec_##n, v1_matvec3_##n, v1_matvec_add_##n, v1_matvec_swiglu_##n}
  T types[] = {MVT(f32,1,4), MVT(f16,1,2), MVT(bf16,1,2), MVT(q8_0,32,34), MVT(q4_0,32,18), MVT(q4_1,32,20),
    MVT(q5_0,32,22), MVT(q5_1,32,24), MVT(q4_k,256,144), MVT(q5_k,256,176), MVT(q6_k,256,210),
    MVT(q2_k,256,84), MVT(q3_k,256,110), MVT(iq4_nl,32,18), MVT(iq4_xs,256,136), MVT(iq2_xxs,256,66),
    MVT(iq2_xs,256,74), MVT(iq2_s,256,82), MVT(iq3_xxs,256,98), MVT(iq3_s,256,110), MVT(iq1_s,256,50),
    MVT(iq1_m,256,56), MVT(tq1_0,256,54), MVT(tq2_0,256,66)};
  for (auto& t : types) {
    test_matvec(t.name, t.bs, t.bb, t.mv, t.mv3, t.mva, 5, t.bs == 256 ? 2304 : 1056, 3);
    test_matvec(t.name, t.bs, t.bb, t.mv, t.mv3, t.mva, 2, t.bs == 256 ? 512 : 96, 8);
    test_matvec(t.name, t.bs, t.bb, t.mv, t.mv3, t.mva, 3, 2048, 1);
    test_matvec(t.name, t.bs, t.bb, t.mv, t.mv3, t.mva, 4, t.bs == 256 ? 512 : 64, 19);
    test_fused(t.name, t.bs, t.bb, t.mv3, t.mvs, t.bs == 256 ? 512 : 128, 3, 0);
    test_fused(t.name, t.bs, t.bb, t.mv3, t.mvs, t.bs == 256 ? 256 : 64, 11, 0);
    test_fused(t.name, t.bs, t.bb, t.mv3, t.mvs, t.bs == 256 ? 256 : 64, 11, 1);
    test_add_norm(t.name, t.bs, t.bb, t.mva, t.mvan, 2100, t.bs == 256 ? 256 : 64);
    test_matvec(t.name, t.bs, t.bb, t.mv1, t.mv31, t.mva1, 7, t.bs == 256 ? 768 : 1056, 1);
    test_fused(t.name, t.bs, t.bb, t.mv31, t.mvs1, t.bs == 256 ? 512 : 128, 1, 0);
    test_fused(t.name, t.bs, t.bb, t.mv31, t.mvs1, t.bs == 256 ? 512 : 128, 1, 1);
    test_v1(t.name, t.bs, t.bb, t.mv, t.mv3, t.mva, t.mvs, t.mv1, t.mv31, t.mva1, t.mvs1, 9, t.bs == 256 ? 1024 : 1088);
    test_add_norm(t.name, t.bs, t.bb, t.mva, t.mvan, 37, t.bs == 256 ? 256 : 96);
  }
  if (!all) {
    printf("%s\n", fails ? "SOME FAILED" : "all ok");
    return fails;
  }
  struct TT { const char* name; int bs, bb; TC tc, tca; };
#define TCT(n, bs, bb) {#n, bs, bb, tc_matvec_##n, tc_matvec_add_##n}
  TT tctypes[] = {TCT(f16,1,2), TCT(bf16,1,2), TCT(q8_0,32,34), TCT(q4_0,32,18), TCT(q4_1,32,20),
    TCT(q5_0,32,22), TCT(q5_1,32,24), TCT(q4_k,256,144), TCT(q5_k,256,176), TCT(q6_k,256,210),
    TCT(q2_k,256,84), TCT(q3_k,256,110), TCT(iq4_nl,32,18), TCT(iq4_xs,256,136), TCT(iq2_xxs,256,66),
    TCT(iq2_xs,256,74), TCT(iq2_s,256,82), TCT(iq3_xxs,256,98), TCT(iq3_s,256,110), TCT(iq1_s,256,50),
    TCT(iq1_m,256,56), TCT(tq1_0,256,54), TCT(tq2_0,256,66)};
  for (auto& t : tctypes) {
    test_tc(t.name, t.bs, t.bb, t.tc, t.tca, 150, t.bs == 256 ? 512 : 192, 37);
    test_tc(t.name, t.bs, t.bb, t.tc, t.tca, 7, t.bs == 256 ? 256 : 64, 3);
  }
  test_attention(8, 2, 64, 128, {1, 130, 300});
  test_attention(8, 2, 128, 256, {257, 5, 0});
  test_attention(4, 4, 256, 128, {200, 129});
  test_attention(12, 2, 96, 128, {140});
  test_attention(3, 1, 32, 128, {70, 300});
  test_attention(16, 1, 256, 128, {150});
  test_attention(4, 2, 20, 128, {70, 3});  // an odd number of float4s a row
  test_attention_tc(8, 2, 64, {{100, 40}, {0, 5}}, 0);
  test_attention_tc(8, 2, 64, {{100, 40}, {0, 5}}, 64);
  test_attention_tc(32, 8, 64, {{0, 70}}, 0);
  test_attention_tc(24, 8, 128, {{7, 30}, {300, 3}}, 0);
  test_attention_tc(24, 8, 128, {{7, 30}, {300, 3}}, 128);
  test_attention_tc(4, 4, 128, {{200, 70}}, 0);
  test_attention_tc(4, 4, 128, {{200, 70}}, 192);
  test_attention_tc(16, 1, 64, {{0, 10}}, 0);
  test_attention_tc(8, 2, 8, {{0, 20}}, 0);
  test_attention_tc(2, 1, 32, {{0, 80}}, 64);
  test_attention_tc(64, 1, 16, {{60, 3}}, 0);
  printf("%s\n", fails ? "SOME FAILED" : "all ok");
  return fails;
}
