// llama_ref: reference outputs from llama.cpp (the peer) for camelid's fixtures.
//
// Built and run by tools/make_tiny_models.py and tools/smollm2_greedy.py against the
// peer's include/llama.h and libllama (see tools/README.md). Written against the public
// llama.h API only.
//
// Modes:
//   llama_ref logits MODEL.gguf TOKENS.txt OUT.bin
//       TOKENS.txt: token ids separated by white space. The whole sequence goes into one
//       batch (positions 0..n-1, sequence 0) with an output requested at every position.
//       OUT.bin: raw little-endian float32, row-major [n_tokens, n_vocab], no header.
//   llama_ref greedy MODEL.gguf PROMPT N OUT.json
//       PROMPT is tokenized with llama_tokenize(add_special = true, parse_special = true),
//       i.e. BOS/EOS as the vocabulary says. The prompt goes in as one batch (output at the
//       last position only), then N tokens are generated greedily, each decoded alone.
//       Generation does not stop at an end-of-generation token; such steps are listed in
//       "eog_steps". Argmax ties go to the lowest id.
//       OUT.json: {"prompt_ids": [...], "generated": [...], "top1_logit": [...],
//                  "top2_logit": [...], "top2_id": [...], "eog_steps": [...]}
//
// Context: llama_context_default_params() (default KV cache type, flash-attention mode,
// n_ctx, n_batch, n_ubatch) except n_threads = n_threads_batch = 2 (env LLAMA_REF_THREADS
// overrides). Log output: warnings and errors only, everything with LLAMA_REF_VERBOSE=1.
// LLAMA_REF_EXACT=1 (diagnostics, not used for the fixtures): F32 KV cache, flash attention off.

#include "llama.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

bool g_verbose = false;

void log_filter(enum ggml_log_level level, const char * text, void * /*user_data*/) {
    static enum ggml_log_level last = GGML_LOG_LEVEL_INFO;
    enum ggml_log_level eff = level == GGML_LOG_LEVEL_CONT ? last : level;
    last = eff;
    if (g_verbose || eff >= GGML_LOG_LEVEL_WARN) {
        std::fputs(text, stderr);
    }
}

[[noreturn]] void die(const std::string & msg) {
    std::fprintf(stderr, "llama_ref: %s\n", msg.c_str());
    std::exit(1);
}

struct Session {
    llama_model *       model = nullptr;
    llama_context *     ctx   = nullptr;
    const llama_vocab * vocab = nullptr;
    int32_t             n_vocab = 0;

    explicit Session(const char * path) {
        llama_model_params mp = llama_model_default_params();
        model = llama_model_load_from_file(path, mp);
        if (model == nullptr) {
            die(std::string("cannot load model ") + path);
        }
        vocab   = llama_model_get_vocab(model);
        n_vocab = llama_vocab_n_tokens(vocab);

        llama_context_params cp = llama_context_default_params();
        int threads = 2;
        if (const char * t = std::getenv("LLAMA_REF_THREADS")) {
            threads = std::atoi(t);
        }
        cp.n_threads       = threads;
        cp.n_threads_batch = threads;
        // Diagnostics only (the fixtures use the defaults): an F32 KV cache and no flash attention.
        if (std::getenv("LLAMA_REF_EXACT") != nullptr) {
            cp.type_k          = GGML_TYPE_F32;
            cp.type_v          = GGML_TYPE_F32;
            cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        }
        ctx = llama_init_from_model(model, cp);
        if (ctx == nullptr) {
            die(std::string("cannot create a context for ") + path);
        }
    }

    ~Session() {
        llama_free(ctx);
        llama_model_free(model);
    }

    // Decodes `ids` at positions start.. in one batch; outputs at every position or only the last.
    void decode(const std::vector<llama_token> & ids, int32_t start, bool all_outputs) {
        const int32_t n = static_cast<int32_t>(ids.size());
        llama_batch batch = llama_batch_init(n, 0, 1);
        for (int32_t i = 0; i < n; ++i) {
            batch.token[i]     = ids[i];
            batch.pos[i]       = start + i;
            batch.n_seq_id[i]  = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i]    = (all_outputs || i == n - 1) ? 1 : 0;
        }
        batch.n_tokens = n;
        const int32_t rc = llama_decode(ctx, batch);
        llama_batch_free(batch);
        if (rc != 0) {
            die("llama_decode returned " + std::to_string(rc));
        }
    }

    const float * logits(int32_t i) {
        const float * row = llama_get_logits_ith(ctx, i);
        if (row == nullptr) {
            die("no logits for output " + std::to_string(i));
        }
        return row;
    }
};

std::vector<llama_token> read_tokens(const char * path) {
    std::ifstream in(path);
    if (!in) {
        die(std::string("cannot open ") + path);
    }
    std::vector<llama_token> ids;
    long long v = 0;
    while (in >> v) {
        ids.push_back(static_cast<llama_token>(v));
    }
    if (!in.eof()) {
        die(std::string("bad token id in ") + path);
    }
    return ids;
}

int run_logits(const char * model_path, const char * tokens_path, const char * out_path) {
    const std::vector<llama_token> ids = read_tokens(tokens_path);
    if (ids.empty()) {
        die("empty token file");
    }
    Session s(model_path);
    for (llama_token t : ids) {
        if (t < 0 || t >= s.n_vocab) {
            die("token id " + std::to_string(t) + " outside the vocabulary");
        }
    }
    s.decode(ids, 0, true);

    std::FILE * f = std::fopen(out_path, "wb");
    if (f == nullptr) {
        die(std::string("cannot write ") + out_path);
    }
    for (size_t i = 0; i < ids.size(); ++i) {
        const float * row = s.logits(static_cast<int32_t>(i));
        if (std::fwrite(row, sizeof(float), s.n_vocab, f) != static_cast<size_t>(s.n_vocab)) {
            die(std::string("short write to ") + out_path);
        }
    }
    std::fclose(f);
    std::fprintf(stderr, "llama_ref: %zu x %d logits -> %s\n", ids.size(), s.n_vocab, out_path);
    return 0;
}

void write_ints(std::ostream & o, const char * key, const std::vector<int32_t> & v) {
    o << "\"" << key << "\": [";
    for (size_t i = 0; i < v.size(); ++i) {
        o << (i ? ", " : "") << v[i];
    }
    o << "]";
}

void write_floats(std::ostream & o, const char * key, const std::vector<float> & v) {
    o << "\"" << key << "\": [";
    char buf[64];
    for (size_t i = 0; i < v.size(); ++i) {
        // %.9g round-trips a float32.
        std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v[i]));
        o << (i ? ", " : "") << buf;
    }
    o << "]";
}

int run_greedy(const char * model_path, const char * prompt, int n_gen, const char * out_path) {
    Session s(model_path);
    const int32_t len = static_cast<int32_t>(std::strlen(prompt));
    std::vector<llama_token> ids(len + 8);
    int32_t n = llama_tokenize(s.vocab, prompt, len, ids.data(), static_cast<int32_t>(ids.size()), true, true);
    if (n < 0) {
        ids.resize(-n);
        n = llama_tokenize(s.vocab, prompt, len, ids.data(), static_cast<int32_t>(ids.size()), true, true);
    }
    if (n <= 0) {
        die("tokenization failed");
    }
    ids.resize(n);

    std::vector<int32_t> generated, top2_id, eog_steps;
    std::vector<float>   top1_logit, top2_logit;
    s.decode(ids, 0, false);
    int32_t pos = n;
    for (int step = 0; step < n_gen; ++step) {
        const float * row = s.logits(-1);
        int32_t best = 0, second = -1;
        for (int32_t v = 1; v < s.n_vocab; ++v) {
            if (row[v] > row[best]) {
                second = best;
                best   = v;
            } else if (second < 0 || row[v] > row[second]) {
                second = v;
            }
        }
        generated.push_back(best);
        top2_id.push_back(second);
        top1_logit.push_back(row[best]);
        top2_logit.push_back(row[second]);
        if (llama_vocab_is_eog(s.vocab, best)) {
            eog_steps.push_back(step);
        }
        if (step + 1 < n_gen) {
            s.decode(std::vector<llama_token>{ best }, pos, false);
            ++pos;
        }
    }

    std::ostringstream o;
    o << "{";
    write_ints(o, "prompt_ids", std::vector<int32_t>(ids.begin(), ids.end()));
    o << ", ";
    write_ints(o, "generated", generated);
    o << ", ";
    write_floats(o, "top1_logit", top1_logit);
    o << ", ";
    write_floats(o, "top2_logit", top2_logit);
    o << ", ";
    write_ints(o, "top2_id", top2_id);
    o << ", ";
    write_ints(o, "eog_steps", eog_steps);
    o << "}\n";
    std::ofstream out(out_path);
    if (!out) {
        die(std::string("cannot write ") + out_path);
    }
    out << o.str();
    return 0;
}

}  // namespace

int main(int argc, char ** argv) {
    g_verbose = std::getenv("LLAMA_REF_VERBOSE") != nullptr;
    llama_log_set(log_filter, nullptr);
    llama_backend_init();
    int rc = 2;
    if (argc == 5 && std::strcmp(argv[1], "logits") == 0) {
        rc = run_logits(argv[2], argv[3], argv[4]);
    } else if (argc == 6 && std::strcmp(argv[1], "greedy") == 0) {
        rc = run_greedy(argv[2], argv[3], std::atoi(argv[4]), argv[5]);
    } else {
        std::fprintf(stderr,
                     "usage: llama_ref logits MODEL TOKENS_FILE OUT.bin\n"
                     "       llama_ref greedy MODEL PROMPT N OUT.json\n");
    }
    llama_backend_free();
    return rc;
}
