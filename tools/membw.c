// Memory bandwidth with N threads, STREAM-style (J. McCalpin, "STREAM: Sustainable Memory
// Bandwidth in High Performance Computers"): each thread works on its own contiguous slice of
// arrays much larger than the last-level cache, and the best of several passes is reported.
//
//   read:  s += a[i]                   8 bytes per element (what a decode step does to weights)
//   read8: the same over 8 streams per thread (8 equal parts of the slice read side by side,
//          as a matrix-vector kernel reads several weight rows at once; more misses in flight)
//   triad: a[i] = b[i] + q * c[i]     24 bytes per element, STREAM's convention (the write
//                                     allocate's extra read is not counted)
//
// Build and run (tools/bench.sh does this):
//   cc -O2 -march=native -pthread tools/membw.c -o target/camelid-tools/membw
//   target/camelid-tools/membw [THREADS=2] [MIB_PER_ARRAY=1024] [PASSES=8]
// Prints one line per test: "<test> GB/s: best mean".

#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    double *a, *b, *c;
    size_t begin, end;
    int test;
    double sum;
    pthread_barrier_t *start;
} job_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void *work(void *p) {
    job_t *j = p;
    pthread_barrier_wait(j->start);
    if (j->test == 0) {
        // Summed as 64-bit integers: integer adds may be reordered, so the compiler vectorizes
        // the loop and the core is never the bottleneck (a chain of double adds would be).
        const unsigned long long *u = (const unsigned long long *)j->a;
        unsigned long long s = 0;
        for (size_t i = j->begin; i < j->end; i++) s += u[i];
        j->sum = (double)s;
    } else if (j->test == 1) {
        const unsigned long long *u = (const unsigned long long *)j->a + j->begin;
        size_t part = (j->end - j->begin) / 8;
        unsigned long long s[8] = {0};
        for (size_t i = 0; i < part; i += 8)
            for (int k = 0; k < 8; k++)
                for (int e = 0; e < 8; e++) s[k] += u[k * part + i + e];
        j->sum = (double)(s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7]);
    } else {
        const double q = 3.0;
        for (size_t i = j->begin; i < j->end; i++) j->a[i] = j->b[i] + q * j->c[i];
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
    int passes = argc > 3 ? atoi(argv[3]) : 8;
    if (threads < 1 || mib < 1 || passes < 1) {
        fprintf(stderr, "usage: membw [THREADS] [MIB_PER_ARRAY] [PASSES]\n");
        return 2;
    }
    size_t n = mib * 1024 * 1024 / sizeof(double);
    double *a = malloc(n * sizeof(double)), *b = malloc(n * sizeof(double)),
           *c = malloc(n * sizeof(double));
    if (!a || !b || !c) {
        fprintf(stderr, "membw: cannot allocate 3 x %zu MiB\n", mib);
        return 1;
    }
    // Touch every page first (and from the threads' slices, as they will be used).
    for (size_t i = 0; i < n; i++) {
        a[i] = 1.0;
        b[i] = 2.0;
        c[i] = 0.5;
    }
    const char *names[3] = {"read", "read8", "triad"};
    const double bytes_per_elem[3] = {8.0, 8.0, 24.0};
    double checksum = 0;
    for (int test = 0; test < 3; test++) {
        double best = 0, total = 0;
        for (int pass = 0; pass < passes; pass++) {
            pthread_t tid[64];
            job_t jobs[64];
            pthread_barrier_t start;
            int t_count = threads > 64 ? 64 : threads;
            pthread_barrier_init(&start, NULL, t_count + 1);
            for (int t = 0; t < t_count; t++) {
                jobs[t] = (job_t){a, b, c, n * t / t_count, n * (t + 1) / t_count, test, 0, &start};
                pthread_create(&tid[t], NULL, work, &jobs[t]);
            }
            double t0 = now();
            pthread_barrier_wait(&start);
            for (int t = 0; t < t_count; t++) {
                pthread_join(tid[t], NULL);
                checksum += jobs[t].sum;
            }
            double dt = now() - t0;
            pthread_barrier_destroy(&start);
            double gbs = bytes_per_elem[test] * n / dt / 1e9;
            total += gbs;
            if (gbs > best) best = gbs;
        }
        printf("%s GB/s: %.1f %.1f\n", names[test], best, total / passes);
    }
    // Keeps the reads from being optimized away.
    if (checksum == 42.0) printf("%f\n", checksum);
    return 0;
}
