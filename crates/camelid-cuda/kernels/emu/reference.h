// Scalar dequantization references, transcribed from camelid-kernels src/quant/legacy.rs,
// src/quant/kquants.rs, src/quant/iquants.rs (with the ternary types) and src/quant/grids.rs (and dtype.rs `kscale`,
// `q3k_scales`), operation for operation, for the emulated tests. The grid types read the tables
// of iq_grids.cuh, which a camelid-cuda test holds to camelid-kernels' own (and `KSIGNS` to the
// formula of ksigns_ref).
#pragma once
#include <string>
static float f16at(const uint8_t* b, int i) { return emu_h2f((unsigned short)(b[i] | (b[i+1] << 8))); }
static void kscale_ref(const uint8_t* s, int j, uint8_t& sc, uint8_t& m) {
  if (j < 4) { sc = s[j] & 63; m = s[j+4] & 63; }
  else { sc = (s[j+4] & 0x0f) | ((s[j-4] >> 6) << 4); m = (s[j+4] >> 4) | ((s[j] >> 6) << 4); }
}
static void q5vals(const uint8_t* qh, const uint8_t* qs, uint8_t* v) {
  uint32_t h = qh[0] | (qh[1]<<8) | (qh[2]<<16) | ((uint32_t)qh[3]<<24);
  for (int j=0;j<16;j++){ v[j]=(qs[j]&0x0f)|(((h>>j)&1)<<4); v[j+16]=(qs[j]>>4)|(((h>>(j+16))&1)<<4);} }
static const int8_t IQ4NL[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
// The grid i-quants, transcribed from camelid-kernels quant/grids.rs (`scale_d`, `levels`,
// `dequant`): 16 halves of 16 weights, each `scale * level`.
static uint32_t u32at(const uint8_t* b, int i) { return b[i] | (b[i+1]<<8) | (b[i+2]<<16) | ((uint32_t)b[i+3]<<24); }
static uint16_t u16at(const uint8_t* b, int i) { return (uint16_t)(b[i] | (b[i+1]<<8)); }
static void put8(int* out, uint64_t e, uint8_t s) { for (int j=0;j<8;j++) { int v=(int8_t)(uint8_t)(e>>(8*j)); out[j] = (s>>j)&1 ? -v : v; } }
static void put4(int* out, uint32_t e, uint8_t s) { for (int j=0;j<4;j++) { int v=(int8_t)(uint8_t)(e>>(8*j)); out[j] = (s>>j)&1 ? -v : v; } }
static uint8_t ksigns_ref(uint32_t s) { return (uint8_t)(s | ((__builtin_popcount(s) & 1) << 7)); }
static float half_step_ref(float d, uint32_t ls, float f) { return __fmul_rn(__fmul_rn(d, __fadd_rn(0.5f, (float)ls)), f); }
static void iq1_put8(int* out, int idx, bool minus) { for (int j=0;j<8;j++) out[j] = 8*(int8_t)(uint8_t)(IQ1S_GRID[idx]>>(8*j)) + (minus ? -1 : 1); }
static bool grid_ref(const std::string& s, const uint8_t* b, float* o) {
  float d;
  if (s=="iq1_m") { uint16_t bits=0; for (int k=0;k<4;k++) bits |= (u16at(b,48+2*k)>>12)<<(4*k); d=emu_h2f(bits); }
  else if (s.rfind("iq",0)==0 && s!="iq4_nl" && s!="iq4_xs") d=f16at(b,0);
  else return false;
  for (int h=0;h<16;h++) {
    float sc; int lv[16];
    if (s=="iq2_xxs") { int ib=h/2; uint32_t aux=u32at(b,2+8*ib+4); sc=half_step_ref(d,aux>>28,0.25f);
      for (int k=0;k<2;k++){ int l=2*(h%2)+k; put8(lv+8*k, IQ2XXS_GRID[b[2+8*ib+l]], ksigns_ref((aux>>(7*l))&127)); } }
    else if (s=="iq2_xs") { sc=half_step_ref(d,(b[66+h/2]>>(4*(h%2)))&15,0.25f);
      for (int k=0;k<2;k++){ uint16_t q=u16at(b,2+2*(2*h+k)); put8(lv+8*k, IQ2XS_GRID[q&511], ksigns_ref(q>>9)); } }
    else if (s=="iq2_s") { sc=half_step_ref(d,(b[74+h/2]>>(4*(h%2)))&15,0.25f);
      for (int k=0;k<2;k++){ int g=2*h+k; int hi=(b[66+g/4]>>(2*(g%4)))&3; put8(lv+8*k, IQ2S_GRID[b[2+g]|(hi<<8)], b[34+g]); } }
    else if (s=="iq3_xxs") { uint32_t aux=u32at(b,66+4*(h/2)); sc=half_step_ref(d,aux>>28,0.5f);
      for (int k=0;k<2;k++){ int l=2*(h%2)+k; uint8_t sg=ksigns_ref((aux>>(7*l))&127); int g=2*h+k;
        put4(lv+8*k, IQ3XXS_GRID[b[2+2*g]], sg); put4(lv+8*k+4, IQ3XXS_GRID[b[3+2*g]], sg>>4); } }
    else if (s=="iq3_s") { int ls=(b[106+h/4]>>(4*((h/2)%2)))&15; sc=__fmul_rn(d,(float)(1+2*ls));
      for (int k=0;k<4;k++){ int i=4*h+k; int idx=b[2+i]|(((b[66+i/8]>>(i%8))&1)<<8); put4(lv+4*k, IQ3S_GRID[idx], b[74+i/2]>>(4*(i%2))); } }
    else if (s=="iq1_s") { uint16_t qh=u16at(b,34+2*(h/2)); sc=__fmul_rn(__fmul_rn(d,(float)(2*((qh>>12)&7)+1)),0.125f);
      for (int k=0;k<2;k++){ int l=2*(h%2)+k; iq1_put8(lv+8*k, b[2+2*h+k]|(((qh>>(3*l))&7)<<8), (qh&0x8000)!=0); } }
    else if (s=="iq1_m") { int ls=(u16at(b,48+2*(h/4))>>(3*(h%4)))&7; sc=__fmul_rn(__fmul_rn(d,(float)(2*ls+1)),0.125f);
      for (int k=0;k<2;k++){ int g=2*h+k; int nib=(b[32+g/2]>>(4*(g%2)))&15; iq1_put8(lv+8*k, b[g]|((nib&7)<<8), (nib&8)!=0); } }
    else return false;
    for (int j=0;j<16;j++) o[16*h+j]=__fmul_rn(sc,(float)lv[j]);
  }
  return true;
}
// references, transcribed from camelid-kernels quant/legacy.rs, quant/kquants.rs, quant/iquants.rs
static void ref(const char* t, const uint8_t* b, float* o) {
  #define M(a,b_) __fmul_rn(a,b_)
  #define A(a,b_) __fadd_rn(a,b_)
  std::string s(t);
  if (grid_ref(s, b, o)) return;
  if (s=="q8_0") { float d=f16at(b,0); for(int i=0;i<32;i++) o[i]=M(d,(float)(int8_t)b[2+i]); }
  else if (s=="q4_0") { float d=f16at(b,0); for(int j=0;j<16;j++){ o[j]=M(d,(float)((b[2+j]&15)-8)); o[j+16]=M(d,(float)((b[2+j]>>4)-8)); } }
  else if (s=="q4_1") { float d=f16at(b,0), m=f16at(b,2); for(int j=0;j<16;j++){ o[j]=A(M(d,(float)(b[4+j]&15)),m); o[j+16]=A(M(d,(float)(b[4+j]>>4)),m);} }
  else if (s=="q5_0") { float d=f16at(b,0); uint8_t v[32]; q5vals(b+2,b+6,v); for(int i=0;i<32;i++) o[i]=M(d,(float)((int)v[i]-16)); }
  else if (s=="q5_1") { float d=f16at(b,0), m=f16at(b,2); uint8_t v[32]; q5vals(b+4,b+8,v); for(int i=0;i<32;i++) o[i]=A(M(d,(float)v[i]),m); }
  else if (s=="q4_k" || s=="q5_k") { bool five = s=="q5_k"; float d=f16at(b,0), dmin=f16at(b,2);
    for(int j=0;j<8;j++){ uint8_t sc,m; kscale_ref(b+4,j,sc,m); float ds=M(d,(float)sc), dm=M(dmin,(float)m);
      const uint8_t* qs = b + (five?48:16) + 32*(j/2);
      for(int l=0;l<32;l++){ uint8_t q = j%2==0 ? (qs[l]&15) : (qs[l]>>4); if(five) q |= ((b[16+l]>>j)&1)<<4; o[32*j+l]=__fsub_rn(M(ds,(float)q),dm);} } }
  else if (s=="q6_k") { float d=f16at(b,208); for(int e=0;e<256;e++){ int h=e/128, r=e%128; uint8_t ql=b[64*h+r%64]; uint8_t lo = r<64 ? (ql&15):(ql>>4);
      uint8_t hi=(b[128+32*h+r%32]>>(2*(r/32)))&3; int8_t sc=(int8_t)b[192+e/16]; o[e]=M(M(d,(float)sc),(float)((int)(lo|(hi<<4))-32)); } }
  else if (s=="q2_k") { float d=f16at(b,80), dmin=f16at(b,82); for(int e=0;e<256;e++){ uint8_t sc=b[e/16];
      uint8_t q=(b[16+32*(e/128)+e%32]>>(2*((e%128)/32)))&3; o[e]=__fsub_rn(M(M(d,(float)(sc&15)),(float)q),M(dmin,(float)(sc>>4))); } }
  else if (s=="q3_k") { float d=f16at(b,108); const uint8_t* sb=b+96; for(int e=0;e<256;e++){ int j=e/16;
      uint8_t lo = j<8 ? (sb[j]&15) : (sb[j-8]>>4); uint8_t hi=(sb[8+j%4]>>(2*(j/4)))&3; int sc=(int8_t)(lo|(hi<<4))-32;
      int low=(b[32+32*(e/128)+e%32]>>(2*((e%128)/32)))&3; int high=(b[e%32]>>(4*(e/128)+(e%128)/32))&1;
      o[e]=M(M(d,(float)sc),(float)(low-(high?0:4))); } }
  else if (s=="iq4_nl") { float d=f16at(b,0); for(int j=0;j<16;j++){ o[j]=M(d,(float)IQ4NL[b[2+j]&15]); o[j+16]=M(d,(float)IQ4NL[b[2+j]>>4]); } }
  else if (s=="iq4_xs") { float d=f16at(b,0); unsigned high=b[2]|(b[3]<<8); for(int j=0;j<8;j++){
      int ls=(((b[4+j/2]>>(4*(j%2)))&15)|(((high>>(2*j))&3)<<4))-32; float dl=M(d,(float)ls);
      for(int l=0;l<16;l++){ o[32*j+l]=M(dl,(float)IQ4NL[b[8+16*j+l]&15]); o[32*j+16+l]=M(dl,(float)IQ4NL[b[8+16*j+l]>>4]); } } }
  else if (s=="tq2_0") { float d=f16at(b,64); for(int e=0;e<256;e++){ int q=(b[32*(e/128)+e%32]>>(2*((e%128)/32)))&3; o[e]=M(d,(float)(q-1)); } }
  else if (s=="tq1_0") { float d=f16at(b,52); auto trit=[](uint8_t q, int n){ uint8_t p=1; for(int i=0;i<n;i++) p*=3; uint8_t sh=(uint8_t)(q*p); return ((uint16_t)sh*3)>>8; };
      for(int e=0;e<256;e++){ int t = e<160 ? trit(b[e%32],e/32) : e<240 ? trit(b[32+(e-160)%16],(e-160)/16) : trit(b[48+(e-240)%4],(e-240)/4); o[e]=M(d,(float)(t-1)); } }
  else if (s=="f32") { memcpy(o,b,4); }
  else if (s=="f16") { o[0]=f16at(b,0); }
  else if (s=="bf16") { o[0]=__uint_as_float((unsigned)(b[0]|(b[1]<<8))<<16); }
}
