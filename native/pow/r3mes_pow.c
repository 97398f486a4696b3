/*
 * r3mes proof-of-work search, native (Node-API only, so one build loads on every Node version with Node-API 8).
 *
 *   powHash = sha256(challenge ‖ nonce as 8-byte big-endian uint64)   -- 40 bytes: exactly one padded block
 *   valid   ⇔ powHash has at least `difficulty` leading zero bits
 *
 * Message words: w0..w7 = challenge, w8 = nonce high word, w9 = nonce low word, w10 = 0x80000000 (padding bit),
 * w11..w14 = 0, w15 = 320 (bit length). Rounds 0..7 read only the challenge: their result (the midstate) is computed
 * once per search. Only the first one or two output words are needed to test the difficulty.
 *
 * Two engines, chosen at run time:
 *   - "sha-ni": the x86 SHA extensions (sha256rnds2 / sha256msg1 / sha256msg2), compiled with a target attribute so
 *     the rest of the file stays baseline x86-64, and used only when CPUID reports SHA + SSE4.1. Several nonces are
 *     hashed interleaved, since one sha256rnds2 chain is latency-bound (measured on an AMD EPYC: 1 lane 45 MH/s,
 *     2–4 lanes ~60 MH/s, 8 lanes 27 MH/s from register spills).
 *   - "portable": plain C, any CPU: eight nonces at once through GCC/Clang vector types (an AVX2 clone picked at run
 *     time on x86), one at a time with other compilers.
 *
 * Exports: search(challenge, from, to, difficulty[, engine]) → the smallest nonce in [from, to] (bigints,
 * inclusive) meeting the difficulty, or -1n; engine "sha-ni" | "portable" forces one (throws when unavailable), and
 * "portable-baseline" the portable code without its AVX2 clone (for tests and benchmarks).
 * shaNi: boolean; engine: the default engine's name.
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define R3MES_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

static const uint32_t IV[8] = {
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))
#define CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))

/* The difficulty test on the first two output words: at least d leading zero bits of h0 ‖ h1. */
typedef struct {
  uint32_t mask0;
  uint32_t mask1;
} target_t;

static target_t make_target(uint32_t d) {
  target_t t;
  if (d >= 32) {
    t.mask0 = 0xffffffffu;
    t.mask1 = d == 32 ? 0 : d >= 64 ? 0xffffffffu : ~(0xffffffffu >> (d - 32));
  } else {
    t.mask0 = d == 0 ? 0 : ~(0xffffffffu >> d);
    t.mask1 = 0;
  }
  return t;
}

static void load_challenge(const uint8_t *challenge, uint32_t w[8]) {
  for (int i = 0; i < 8; i++) {
    w[i] = ((uint32_t)challenge[4 * i] << 24) | ((uint32_t)challenge[4 * i + 1] << 16) |
           ((uint32_t)challenge[4 * i + 2] << 8) | (uint32_t)challenge[4 * i + 3];
  }
}

/* Rounds [from, to) on s[0..7] with schedule w, no feed-forward. */
static void rounds(uint32_t s[8], const uint32_t *w, int from, int to) {
  uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
  for (int t = from; t < to; t++) {
    uint32_t t1 = h + BSIG1(e) + CH(e, f, g) + K[t] + w[t];
    uint32_t t2 = BSIG0(a) + MAJ(a, b, c);
    h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
  }
  s[0] = a; s[1] = b; s[2] = c; s[3] = d; s[4] = e; s[5] = f; s[6] = g; s[7] = h;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Portable engine */

/*
 * A scan searches low words [lo, hi] under one high word; `st` is the state after round 8 (which reads the high word
 * w8), `cw` the challenge words. Returns 1 and sets *found to the smallest hit, else 0.
 */
typedef int (*scan_fn)(const uint32_t st[8], const uint32_t cw[8], uint32_t high, uint32_t lo, uint32_t hi,
                       target_t target, uint32_t *found);

#if !defined(__GNUC__) && !defined(__clang__)
/* For compilers without vector extensions (MSVC): one nonce at a time. */
static int scalar_scan(const uint32_t st[8], const uint32_t cw[8], uint32_t high, uint32_t lo, uint32_t hi,
                       target_t target, uint32_t *found) {
  uint32_t w[64];
  for (int i = 0; i < 8; i++) w[i] = cw[i];
  w[8] = high;
  w[10] = 0x80000000u;
  w[11] = w[12] = w[13] = w[14] = 0;
  w[15] = 320;
  /* w16.. parts that do not depend on w9: w16 = σ1(w14) + w9 + σ0(w1) + w0, w17 = σ1(w15) + w10 + σ0(w2) + w1 … */
  const uint32_t p16 = SSIG1(w[14]) + SSIG0(w[1]) + w[0];
  const uint32_t w17 = SSIG1(w[15]) + w[10] + SSIG0(w[2]) + w[1];
  const uint32_t p18 = w[11] + SSIG0(w[3]) + w[2];
  const uint32_t w19 = SSIG1(w17) + w[12] + SSIG0(w[4]) + w[3];
  w[17] = w17;
  w[19] = w19;
  for (uint32_t n = lo;; n++) {
    w[9] = n;
    const uint32_t w16 = p16 + n;
    w[16] = w16;
    w[18] = SSIG1(w16) + p18;
    for (int t = 20; t < 64; t++) w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
    for (int t = 9; t < 64; t++) {
      uint32_t t1 = h + BSIG1(e) + CH(e, f, g) + K[t] + w[t];
      uint32_t t2 = BSIG0(a) + MAJ(a, b, c);
      h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    if (((a + IV[0]) & target.mask0) == 0 && ((b + IV[1]) & target.mask1) == 0) {
      *found = n;
      return 1;
    }
    if (n == hi) return 0;
  }
}

static scan_fn pick_portable_scan(void) {
  return scalar_scan;
}
#define baseline_scan scalar_scan

#else
/*
 * The same scan on eight nonces at once with the compiler's generic vector type: plain C that GCC and Clang lower to
 * whatever SIMD the target has (SSE2 on baseline x86-64, AVX2 in the clone below, NEON on arm64), measured at ~2.5×
 * the scalar loop on SSE2.
 */
#define VL 8
#if !defined(__clang__)
/* GCC 12 reports the fully unrolled schedule's W[4], W[8], W[17], W[19] as maybe uninitialized: they are set above. */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
typedef uint32_t vu32 __attribute__((vector_size(4 * VL)));

static inline __attribute__((always_inline)) int vector_scan_body(const uint32_t st[8], const uint32_t cw[8],
                                                                   uint32_t high, uint32_t lo, uint32_t hi,
                                                                   target_t target, uint32_t *found) {
  uint32_t w[16];
  for (int i = 0; i < 8; i++) w[i] = cw[i];
  w[8] = high;
  w[9] = 0;
  w[10] = 0x80000000u;
  w[11] = w[12] = w[13] = w[14] = 0;
  w[15] = 320;
  const uint32_t p16 = SSIG1(w[14]) + SSIG0(w[1]) + w[0];
  const uint32_t w17 = SSIG1(w[15]) + w[10] + SSIG0(w[2]) + w[1];
  const uint32_t p18 = w[11] + SSIG0(w[3]) + w[2];
  const uint32_t w19 = SSIG1(w17) + w[12] + SSIG0(w[4]) + w[3];
  for (uint64_t n = lo; n <= hi; n += VL) {
    vu32 nonces;
    /* Past the end, lanes repeat the last nonce: harmless, and the lane order keeps the smallest hit first. */
    for (int l = 0; l < VL; l++) nonces[l] = (uint32_t)(n + (uint64_t)l > hi ? hi : n + (uint64_t)l);
    vu32 W[64];
    for (int t = 0; t < 16; t++) W[t] = (vu32){0} + w[t];
    W[9] = nonces;
    W[16] = W[9] + p16;
    W[17] = (vu32){0} + w17;
    W[18] = SSIG1(W[16]) + p18;
    W[19] = (vu32){0} + w19;
#pragma GCC unroll 64
    for (int t = 20; t < 64; t++) W[t] = SSIG1(W[t - 2]) + W[t - 7] + SSIG0(W[t - 15]) + W[t - 16];
    vu32 a = (vu32){0} + st[0], b = (vu32){0} + st[1], c = (vu32){0} + st[2], d = (vu32){0} + st[3];
    vu32 e = (vu32){0} + st[4], f = (vu32){0} + st[5], g = (vu32){0} + st[6], h = (vu32){0} + st[7];
#pragma GCC unroll 64
    for (int t = 9; t < 64; t++) {
      vu32 t1 = h + BSIG1(e) + CH(e, f, g) + K[t] + W[t];
      vu32 t2 = BSIG0(a) + MAJ(a, b, c);
      h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    const vu32 miss = ((a + IV[0]) & target.mask0) | ((b + IV[1]) & target.mask1);
    for (int l = 0; l < VL; l++) {
      if (miss[l] == 0) {
        *found = nonces[l];
        return 1;
      }
    }
  }
  return 0;
}

static int baseline_scan(const uint32_t st[8], const uint32_t cw[8], uint32_t high, uint32_t lo, uint32_t hi,
                         target_t target, uint32_t *found) {
  return vector_scan_body(st, cw, high, lo, hi, target, found);
}

#ifdef R3MES_X86
__attribute__((target("avx2"))) static int vector_scan_avx2(const uint32_t st[8], const uint32_t cw[8], uint32_t high,
                                                            uint32_t lo, uint32_t hi, target_t target,
                                                            uint32_t *found) {
  return vector_scan_body(st, cw, high, lo, hi, target, found);
}
#endif

static scan_fn pick_portable_scan(void) {
#ifdef R3MES_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) return vector_scan_avx2;
#endif
  return baseline_scan;
}
#endif

static scan_fn portable_scan_impl;

/* `baseline`: the build's default vector code even when a wider clone was picked (to test and measure it). */
static int portable_search(const uint8_t *challenge, uint64_t from, uint64_t to, uint32_t difficulty, int baseline,
                           uint64_t *found) {
  const scan_fn scan = baseline ? baseline_scan : portable_scan_impl;
  uint32_t cw[64];
  load_challenge(challenge, cw);
  uint32_t mid[8];
  memcpy(mid, IV, sizeof mid);
  rounds(mid, cw, 0, 8);
  const target_t target = make_target(difficulty);
  uint64_t start = from;
  for (;;) {
    const uint32_t high = (uint32_t)(start >> 32);
    const uint64_t last_of_high = ((uint64_t)high << 32) | 0xffffffffu;
    const uint64_t end = to < last_of_high ? to : last_of_high;
    uint32_t st[8];
    memcpy(st, mid, sizeof st);
    cw[8] = high;
    rounds(st, cw, 8, 9);
    uint32_t low;
    const int hit = scan(st, cw, high, (uint32_t)start, (uint32_t)end, target, &low);
    if (hit) {
      *found = ((uint64_t)high << 32) | low;
      return 1;
    }
    if (end == to) return 0;
    start = end + 1;
  }
}

/* ------------------------------------------------------------------------------------------------------------ */
/* SHA-NI engine */

#ifdef R3MES_X86

static int cpu_has_sha_ni(void) {
  unsigned int eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
  const int sse41 = (ecx >> 19) & 1, ssse3 = (ecx >> 9) & 1;
  if (__get_cpuid_max(0, 0) < 7) return 0;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const int sha = (ebx >> 29) & 1;
  return sha && sse41 && ssse3;
}

#define SHANI __attribute__((target("sha,sse4.1,ssse3")))

/* Lanes hashed interleaved: sha256rnds2 has a latency of several cycles and one hash is a single dependency chain. */
#ifndef LANES
#define LANES 4
#endif

/*
 * One quad of rounds on every lane. `W[l]` holds w[4q..4q+3] (w[4q] in lane 0), `kq` the matching constants.
 * State layout as the instructions want it: s0 = (A, B, E, F), s1 = (C, D, G, H), A in the top lane.
 */
#define QUAD(W, kq)                                                    \
  do {                                                                 \
    for (int l = 0; l < LANES; l++) {                                  \
      __m128i m = _mm_add_epi32((W)[l], (kq));                         \
      s1[l] = _mm_sha256rnds2_epu32(s1[l], s0[l], m);                  \
      m = _mm_shuffle_epi32(m, 0x0E);                                  \
      s0[l] = _mm_sha256rnds2_epu32(s0[l], s1[l], m);                  \
    }                                                                  \
  } while (0)

/* Next schedule quad w[t..t+3] from the four before it: σ1/σ0 via sha256msg2/msg1 (in place in a). */
#define NEXT(a, b, c, d)                                                         \
  do {                                                                           \
    for (int l = 0; l < LANES; l++) {                                            \
      __m128i t = _mm_sha256msg1_epu32((a)[l], (b)[l]);                          \
      t = _mm_add_epi32(t, _mm_alignr_epi8((d)[l], (c)[l], 4));                  \
      (a)[l] = _mm_sha256msg2_epu32(t, (d)[l]);                                  \
    }                                                                            \
  } while (0)

SHANI static int shani_scan(const uint32_t st[8], const uint32_t cw[8], uint32_t high, uint32_t lo, uint32_t hi,
                            target_t target, uint32_t *found) {
  /* The state after round 7 (rounds 8 and 9 run as one sha256rnds2 pair with the nonce). */
  const __m128i init0 = _mm_set_epi32((int)st[0], (int)st[1], (int)st[4], (int)st[5]);
  const __m128i init1 = _mm_set_epi32((int)st[2], (int)st[3], (int)st[6], (int)st[7]);
  const __m128i w0 = _mm_set_epi32((int)cw[3], (int)cw[2], (int)cw[1], (int)cw[0]);
  const __m128i w1 = _mm_set_epi32((int)cw[7], (int)cw[6], (int)cw[5], (int)cw[4]);
  const __m128i w3 = _mm_set_epi32(320, 0, 0, 0);
  const __m128i w2base = _mm_set_epi32(0, (int)0x80000000u, 0, (int)high);
  /* Schedule parts that do not depend on the low word. */
  const __m128i m1_01 = _mm_sha256msg1_epu32(w0, w1); /* w0..3 + σ0(w1..4) */
  const __m128i m1_12 = _mm_sha256msg1_epu32(w1, w2base); /* w4..7 + σ0(w5..8) */
  __m128i kv[16];
  for (int q = 0; q < 16; q++) kv[q] = _mm_loadu_si128((const __m128i *)&K[4 * q]);
  const uint32_t iv0 = IV[0], iv1 = IV[1];

  uint64_t n = lo;
  const uint64_t end = hi;
  while (n <= end) {
    __m128i s0[LANES], s1[LANES], A[LANES], B[LANES], C[LANES], D[LANES];
    for (int l = 0; l < LANES; l++) {
      /* Past the end, lanes repeat the last nonce: harmless, and the lane order keeps the smallest hit first. */
      uint64_t ln = n + (uint64_t)l;
      if (ln > end) ln = end;
      s0[l] = init0;
      s1[l] = init1;
      C[l] = _mm_insert_epi32(w2base, (int)(uint32_t)ln, 1); /* w8..11 */
      D[l] = w3;                                             /* w12..15 */
    }
    /* Rounds 8..11, 12..15. */
    QUAD(C, kv[2]);
    QUAD(D, kv[3]);
    /* w16..19 = msg2(msg1(w0, w1) + w9..12, w12..15); w20..23 likewise from w4..7 (msg1 precomputed). */
    for (int l = 0; l < LANES; l++) {
      __m128i t = _mm_add_epi32(m1_01, _mm_alignr_epi8(D[l], C[l], 4));
      A[l] = _mm_sha256msg2_epu32(t, D[l]);
    }
    QUAD(A, kv[4]);
    for (int l = 0; l < LANES; l++) {
      __m128i t = _mm_add_epi32(m1_12, _mm_alignr_epi8(A[l], D[l], 4));
      B[l] = _mm_sha256msg2_epu32(t, A[l]);
    }
    QUAD(B, kv[5]);
    /* w24..63: a rolling window of four quads, (C, D, A, B) → C, (D, A, B, C) → D, … */
    NEXT(C, D, A, B); QUAD(C, kv[6]);
    NEXT(D, A, B, C); QUAD(D, kv[7]);
    NEXT(A, B, C, D); QUAD(A, kv[8]);
    NEXT(B, C, D, A); QUAD(B, kv[9]);
    NEXT(C, D, A, B); QUAD(C, kv[10]);
    NEXT(D, A, B, C); QUAD(D, kv[11]);
    NEXT(A, B, C, D); QUAD(A, kv[12]);
    NEXT(B, C, D, A); QUAD(B, kv[13]);
    NEXT(C, D, A, B); QUAD(C, kv[14]);
    NEXT(D, A, B, C); QUAD(D, kv[15]);
    for (int l = 0; l < LANES; l++) {
      const uint32_t h0 = (uint32_t)_mm_extract_epi32(s0[l], 3) + iv0;
      const uint32_t h1 = (uint32_t)_mm_extract_epi32(s0[l], 2) + iv1;
      if ((h0 & target.mask0) == 0 && (h1 & target.mask1) == 0) {
        uint64_t ln = n + (uint64_t)l;
        *found = (uint32_t)(ln > end ? end : ln);
        return 1;
      }
    }
    n += LANES;
  }
  return 0;
}

SHANI static int shani_search(const uint8_t *challenge, uint64_t from, uint64_t to, uint32_t difficulty,
                              uint64_t *found) {
  uint32_t cw[64];
  load_challenge(challenge, cw);
  uint32_t mid[8];
  memcpy(mid, IV, sizeof mid);
  rounds(mid, cw, 0, 8);
  const target_t target = make_target(difficulty);
  uint64_t start = from;
  for (;;) {
    const uint32_t high = (uint32_t)(start >> 32);
    const uint64_t last_of_high = ((uint64_t)high << 32) | 0xffffffffu;
    const uint64_t end = to < last_of_high ? to : last_of_high;
    uint32_t low;
    if (shani_scan(mid, cw, high, (uint32_t)start, (uint32_t)end, target, &low)) {
      *found = ((uint64_t)high << 32) | low;
      return 1;
    }
    if (end == to) return 0;
    start = end + 1;
  }
}

#else

static int cpu_has_sha_ni(void) { return 0; }
static int shani_search(const uint8_t *challenge, uint64_t from, uint64_t to, uint32_t difficulty, uint64_t *found) {
  (void)challenge; (void)from; (void)to; (void)difficulty; (void)found;
  return 0;
}

#endif

/* ------------------------------------------------------------------------------------------------------------ */
/* Node-API binding */

/* Set by every instance's init (one per worker thread) to the same CPUID-derived values. */
static int has_sha_ni = 0;

#define CHECK(env, call)                                                   \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      napi_throw_error((env), NULL, "r3mes_pow: Node-API call failed: " #call); \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

static napi_value throw_range(napi_env env, const char *message) {
  napi_throw_range_error(env, NULL, message);
  return NULL;
}

static int get_u64(napi_env env, napi_value v, uint64_t *out) {
  bool lossless = false;
  napi_valuetype type;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_bigint) return 0;
  if (napi_get_value_bigint_uint64(env, v, out, &lossless) != napi_ok) return 0;
  return lossless;
}

static napi_value Search(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) return throw_range(env, "search(challenge, from, to, difficulty[, engine]) takes 4 or 5 arguments");

  bool is_typed = false;
  CHECK(env, napi_is_typedarray(env, argv[0], &is_typed));
  if (!is_typed) return throw_range(env, "challenge must be a Uint8Array of 32 bytes");
  napi_typedarray_type ta_type;
  size_t length;
  void *data;
  CHECK(env, napi_get_typedarray_info(env, argv[0], &ta_type, &length, &data, NULL, NULL));
  if (ta_type != napi_uint8_array || length != 32) return throw_range(env, "challenge must be a Uint8Array of 32 bytes");
  uint8_t challenge[32];
  memcpy(challenge, data, 32);

  uint64_t from, to;
  if (!get_u64(env, argv[1], &from) || !get_u64(env, argv[2], &to) || from > to) {
    return throw_range(env, "from and to must be bigints with 0 <= from <= to < 2^64");
  }
  uint32_t difficulty;
  if (napi_get_value_uint32(env, argv[3], &difficulty) != napi_ok || difficulty > 64) {
    return throw_range(env, "difficulty must be an integer in 0..64");
  }

  int use_sha_ni = has_sha_ni, baseline = 0;
  if (argc >= 5) {
    napi_valuetype type;
    CHECK(env, napi_typeof(env, argv[4], &type));
    if (type == napi_string) {
      char name[32];
      size_t n;
      CHECK(env, napi_get_value_string_utf8(env, argv[4], name, sizeof name, &n));
      if (strcmp(name, "sha-ni") == 0) {
        if (!has_sha_ni) return throw_range(env, "the sha-ni engine is not available on this CPU");
        use_sha_ni = 1;
      } else if (strcmp(name, "portable") == 0) {
        use_sha_ni = 0;
      } else if (strcmp(name, "portable-baseline") == 0) {
        use_sha_ni = 0;
        baseline = 1;
      } else {
        return throw_range(env, "engine must be \"sha-ni\", \"portable\" or \"portable-baseline\"");
      }
    } else if (type != napi_undefined) {
      return throw_range(env, "engine must be \"sha-ni\", \"portable\" or \"portable-baseline\"");
    }
  }

  uint64_t found = 0;
  const int hit = use_sha_ni ? shani_search(challenge, from, to, difficulty, &found)
                             : portable_search(challenge, from, to, difficulty, baseline, &found);
  napi_value result;
  if (hit) {
    CHECK(env, napi_create_bigint_uint64(env, found, &result));
  } else {
    CHECK(env, napi_create_bigint_int64(env, -1, &result));
  }
  return result;
}

NAPI_MODULE_INIT() {
  has_sha_ni = cpu_has_sha_ni();
  portable_scan_impl = pick_portable_scan();
  napi_value fn, flag, name;
  CHECK(env, napi_create_function(env, "search", NAPI_AUTO_LENGTH, Search, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "search", fn));
  CHECK(env, napi_get_boolean(env, has_sha_ni != 0, &flag));
  CHECK(env, napi_set_named_property(env, exports, "shaNi", flag));
  CHECK(env, napi_create_string_utf8(env, has_sha_ni ? "sha-ni" : "portable", NAPI_AUTO_LENGTH, &name));
  CHECK(env, napi_set_named_property(env, exports, "engine", name));
  return exports;
}
