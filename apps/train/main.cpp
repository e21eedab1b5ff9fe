// wengert-train — the main job: trains an MLP on Fashion-MNIST with wengert, or reproduces the
// seed networks (seed 004's 3-4-3-1 tanh/sigmoid net, XOR). Run with --help for the flags.
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "serialize_bytes.hpp"  // nn::detail::set_save_hook, for WENGERT_FAULT_KILL_SAVE
#include "trainer.hpp"

using namespace wengert;

namespace {

const char* kUsage = R"(usage: wengert-train [options]

Trains a multi-layer perceptron (default) or a convolutional network on Fashion-MNIST with
wengert (Adam, softmax cross-entropy), or reproduces the seed networks.

Modes:
  --mode fashion        (default) train on Fashion-MNIST, write metrics, plot and weights
  --mode seed004        seed 004's 3-4-3-1 network (tanh, tanh, sigmoid output, binary
                        cross-entropy, gradient descent) on a generated two-class problem
  --mode xor            a 2-4-1 tanh/sigmoid network learning XOR
  --eval WEIGHTS        evaluate saved weights on the test set: accuracy and confusion matrix
                        (the model, its sizes and activation are read from the file; --model,
                        --hidden or --activation, if given, must agree with it)

Options for fashion / --eval:
  --data DIR            data set directory (default /usr/share/datasets/fashion-mnist)
  --epochs N            epochs (default 10)
  --batch N             mini-batch size, at most 65536 (default 128). The GLOBAL batch: with
                        --threads or under mpirun each step's N rows are split over the
                        threads and ranks, and the step follows their mean loss
  --threads N           split every batch over N threads of this process (default 1); see
                        "Data-parallel training" below
  --model NAME          mlp (default) or cnn: conv 3x3 (C1) -> relu -> maxpool 2 -> conv 3x3
                        (C2) -> relu -> maxpool 2 -> linear (H) -> relu -> linear 10
  --hidden A,B,...      hidden layer sizes, each at most 16384 (default 256,128); for
                        --model cnn the three sizes C1,C2,H (default 32,64,128)
  --activation NAME     tanh or relu (default relu)
  --lr X                Adam learning rate (default 0.001)
  --schedule NAME       cosine (default: lr decays to 0 over the run) or constant
  --seed N              seed for initialisation and shuffling (default 1)
  --limit N             use only the first N training examples (default: all)
  --out DIR             where metrics.csv, metrics.png, weights.wgrt and checkpoint.wgrt go
                        (default runs/fashion, or runs/fashion.2, .3, … beside an earlier run).
                        A DIR given here that already holds a run is refused: continue it with
                        --resume DIR, or replace it with --force
  --force               start a new run in an --out that holds one (its files are replaced)
  --resume DIR          continue the run saved in DIR/checkpoint.wgrt: the model, Adam's state,
                        the schedule and the data order are restored, metrics.csv is appended
                        to, and the result is bit-identical to a run that never stopped. The
                        run's settings come from the checkpoint; flags that would change them
                        are refused (--data may point elsewhere)
  --checkpoint-every N  also write the checkpoint every N batches (default: once per epoch)
  --stop-after N        stop after N epochs of this invocation (checkpoint written; continue
                        with --resume), e.g. to fit a run into time-limited jobs

Data-parallel training (fashion):
  --threads N           N threads, each on its own copy of the model and its own tape, train
                        shards of every batch; their gradients are reduced before each Adam
                        step. 1 is the plain single-threaded run (its results are unchanged)
  mpirun                scripts/mpirun.sh -np R wengert-train …: each rank trains its shard of
                        every global batch (the same shuffle everywhere), gradients are
                        averaged with one MPI_Allreduce per step, test evaluation is split over
                        the ranks and summed. Only rank 0 prints and writes files (metrics,
                        plot, weights, checkpoints). Combines with --threads. Results equal the
                        single-process run's up to float rounding

Options for seed004 / xor:
  --steps N             gradient-descent steps (default 3000 for seed004, 2000 for xor)
  --lr X                learning rate (default 0.5 for seed004, 1.0 for xor)
  --seed N              seed (default 1)

  --help                this text

Values follow the flag (--epochs 5) or an '=' (--epochs=5); if a flag is repeated, its last
value counts. Integers are decimal digits only (no sign, spaces, hex or exponent).
Exit codes: 0 success, 1 runtime error (e.g. unreadable data), 2 bad command line.
)";

// Upper limits of the size flags, refused as usage errors (exit 2) before anything is allocated.
// A batch costs memory in proportion to its rows: the batch buffer holds 784 floats a row and
// the tape a value and a gradient per row for every layer's outputs. Measured with the default
// model, a full batch of Fashion-MNIST's 60,000 rows peaks at 0.8 GB resident (0.28 GB at batch
// 128, most of it the data set): 2^16 keeps full-batch training possible and bounds the rest (a
// larger batch is cut to the training rows anyway). A layer of a×b weights costs 16 bytes a
// weight (value, gradient, Adam's two moments): with hidden sizes up to 2^14, the largest layer
// between two hidden layers takes 4 GiB; at 2^16 a single such layer would take 64 GiB.
constexpr std::size_t kMaxBatch = std::size_t(1) << 16;
constexpr std::size_t kMaxHidden = std::size_t(1) << 14;
constexpr std::size_t kNoLimit = std::numeric_limits<std::size_t>::max();

struct Args {
  std::string mode = "fashion";
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string eval;
  std::string out = "runs/fashion";
  std::size_t epochs = 10, batch = 128, limit = 0, steps = 0;
  std::vector<std::size_t> hidden{256, 128};
  bool cnn = false;
  bool model_given = false;
  nn::Activation activation = nn::Activation::kRelu;
  double lr = -1;
  bool cosine = true;
  std::uint64_t seed = 1;
  bool hidden_given = false, activation_given = false;
  std::string resume;
  bool force = false;
  std::size_t checkpoint_every = 0, stop_after = 0;
  std::size_t threads = 1;
  std::vector<std::string> given;  // the flags on the command line, for --resume's check
  bool out_given = false;
};

[[noreturn]] void usage_error(const std::string& msg) {
  std::cerr << "wengert-train: " << msg << "\n(see wengert-train --help)\n";
  std::exit(2);
}

// A bad value inside a flag's callback: CLI11 stops parsing and parse() reports it.
[[noreturn]] void bad_value(const std::string& msg) { throw CLI::ValidationError(msg); }

// A count, strictly: decimal digits only (no sign, space, "0x" or exponent), min ≤ n ≤ max.
std::size_t parse_count(const std::string& flag, const std::string& v, std::size_t min = 1,
                        std::size_t max = kNoLimit, const std::string& why = "") {
  const bool digits =
      !v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits)
    bad_value(flag + " needs a " + (min == 0 ? "non-negative" : "positive") +
              " integer (decimal digits), got '" + v + "'");
  std::size_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n, 10);
  if (ec == std::errc::result_out_of_range || n > max)
    bad_value(flag + " must be at most " + std::to_string(max) + why + ", got '" + v + "'");
  if (ec != std::errc() || end != v.data() + v.size() || n < min)
    bad_value(flag + " needs a positive integer, got '" + v + "'");
  return n;
}

// A positive, finite decimal number ("0.001", "1e-3"); from_chars takes no space, sign '+' or hex.
double parse_rate(const std::string& flag, const std::string& v) {
  double x = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || !(x > 0) || !std::isfinite(x))
    bad_value(flag + " needs a positive number, got '" + v + "'");
  return x;
}

Args parse(int argc, char** argv) {
  Args a;
  CLI::App app{"wengert-train", "wengert-train"};
  // Unknown arguments are collected and reported below, in this program's words.
  app.allow_extras();
  // Each flag converts its value as soon as it is read, in command-line order: the first bad
  // value is the one reported, and a repeated flag's last value wins.
  auto flag = [&](const char* name, std::function<void(const std::string&)> set) {
    app.add_option_function<std::string>(name,
                                         [&a, name, set](const std::string& v) {
                                           a.given.push_back(name);
                                           set(v);
                                         })
        ->trigger_on_parse();
  };
  auto count = [&](const char* name, std::size_t& to, std::size_t min = 1,
                   std::size_t max = kNoLimit, std::string why = "") {
    flag(name, [&to, name, min, max, why](const std::string& v) {
      to = parse_count(name, v, min, max, why);
    });
  };
  flag("--mode", [&](const std::string& v) {
    if (v != "fashion" && v != "seed004" && v != "xor")
      bad_value("--mode must be fashion, seed004 or xor, got '" + v + "'");
    a.mode = v;
  });
  flag("--data", [&](const std::string& v) { a.data = v; });
  flag("--model", [&](const std::string& v) {
    if (v != "mlp" && v != "cnn") bad_value("--model must be mlp or cnn, got '" + v + "'");
    a.cnn = v == "cnn";
    a.model_given = true;
  });
  flag("--eval", [&](const std::string& v) { a.eval = v; });
  flag("--out", [&](const std::string& v) {
    a.out = v;
    a.out_given = true;
  });
  flag("--resume", [&](const std::string& v) { a.resume = v; });
  app.add_flag_callback("--force", [&] { a.force = true; });
  count("--checkpoint-every", a.checkpoint_every);
  count("--stop-after", a.stop_after);
  count("--threads", a.threads, 1, 256, " (256)");
  count("--epochs", a.epochs);
  count("--batch", a.batch, 1, kMaxBatch, " (2^16, more rows than Fashion-MNIST's training set)");
  count("--limit", a.limit);
  count("--steps", a.steps);
  flag("--seed", [&](const std::string& v) { a.seed = parse_count("--seed", v, 0); });
  flag("--lr", [&](const std::string& v) { a.lr = parse_rate("--lr", v); });
  flag("--schedule", [&](const std::string& v) {
    if (v != "cosine" && v != "constant")
      bad_value("--schedule must be cosine or constant, got '" + v + "'");
    a.cosine = v == "cosine";
  });
  flag("--activation", [&](const std::string& v) {
    if (v == "tanh")
      a.activation = nn::Activation::kTanh;
    else if (v == "relu")
      a.activation = nn::Activation::kRelu;
    else
      bad_value("--activation must be tanh or relu, got '" + v + "'");
    a.activation_given = true;
  });
  flag("--hidden", [&](const std::string& v) {
    if (v.empty() || v.front() == ',' || v.back() == ',' || v.find(",,") != std::string::npos)
      bad_value("--hidden needs sizes like 256,128, got '" + v + "'");
    a.hidden.clear();
    std::stringstream ss(v);
    std::string part;
    while (std::getline(ss, part, ','))
      a.hidden.push_back(parse_count("--hidden", part, 1, kMaxHidden,
                                     " (2^14: a 16384x16384 layer takes 4 GiB with its "
                                     "gradient and Adam's moments)"));
    a.hidden_given = true;
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help before any bad value prints the usage (CLI11 raises CallForHelp only after the
    // whole command line has been read).
    if (app.get_help_ptr()->count() > 0) {
      std::cout << kUsage;
      std::exit(0);
    }
    // Every flag takes exactly one value and takes the next argument whatever it is, so a value
    // can only be missing after the last argument.
    if (dynamic_cast<const CLI::ArgumentMismatch*>(&e)) {
      const std::string last = argv[argc - 1];
      usage_error(last.substr(0, last.find('=')) + " needs a value");  // "--epochs" or "--epochs="
    }
    usage_error(e.what());
  }
  if (!app.remaining().empty()) {
    const std::string r = app.remaining().front();
    usage_error((r.size() > 1 && r[0] == '-' ? "unknown option '" : "unexpected argument '") + r +
                "'");
  }
  if (!a.eval.empty() && a.mode != "fashion")
    usage_error("--eval evaluates Fashion-MNIST weights; it does not combine with --mode " +
                a.mode);
  if (!a.resume.empty() && (a.mode != "fashion" || !a.eval.empty()))
    usage_error("--resume continues a Fashion-MNIST training run; it does not combine with " +
                std::string(a.eval.empty() ? "--mode " + a.mode : "--eval"));
  if (!a.resume.empty()) {
    // The run's settings come from its checkpoint: a flag that would change them is refused.
    for (const std::string& f : a.given)
      if (f != "--resume" && f != "--data" && f != "--checkpoint-every" && f != "--stop-after" &&
          f != "--out" && f != "--threads")
        usage_error(f + " cannot be given with --resume: the run's settings come from " + a.resume +
                    "/checkpoint.wgrt");
    if (a.force) usage_error("--force cannot be given with --resume (it would discard the run)");
    for (const std::string& f : a.given)
      if (f == "--out")
        usage_error("--out cannot be given with --resume: the run continues in " + a.resume);
    a.out = a.resume;
  }
  if (a.cnn) {
    if (!a.hidden_given) a.hidden = {32, 64, 128};
    if (a.hidden.size() != 3)
      usage_error(
          "--model cnn takes three --hidden sizes (conv 1 channels, conv 2 channels, "
          "linear units), like 32,64,128");
    if (a.activation_given && a.activation != nn::Activation::kRelu)
      usage_error("--model cnn uses relu; --activation tanh is for the MLP");
  }
  return a;
}

// Under mpirun: this process's rank and the number of ranks (0 and 1 otherwise). Only rank 0
// prints and writes files.
#if WENGERT_HAVE_MPI
std::unique_ptr<dist::MpiSession> g_mpi;
#endif
int world_rank() {
#if WENGERT_HAVE_MPI
  if (g_mpi) return g_mpi->rank();
#endif
  return 0;
}
int world_size() {
#if WENGERT_HAVE_MPI
  if (g_mpi) return g_mpi->size();
#endif
  return 1;
}

const char* kFashionClasses[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

// Progress: a redrawn bar on a terminal, a few plain lines otherwise.
class Progress {
 public:
  Progress(std::size_t epoch, std::size_t epochs, std::size_t total)
      : epoch_(epoch),
        epochs_(epochs),
        total_(total),
        tty_(isatty(STDOUT_FILENO)),
        start_(std::chrono::steady_clock::now()) {}
  void update(std::size_t done, std::size_t examples, double running_loss) {
    const double secs = seconds();
    const double rate = secs > 0 ? examples / secs : 0;
    if (tty_) {
      if (done != total_ && secs - last_ < 0.1) return;
      last_ = secs;
      const int width = 30, fill = int(width * done / total_);
      std::printf("\repoch %zu/%zu [%s%s] %zu/%zu  %.0f ex/s  loss %.4f", epoch_, epochs_,
                  std::string(fill, '=').c_str(), std::string(width - fill, ' ').c_str(), done,
                  total_, rate, running_loss);
      std::fflush(stdout);
      if (done == total_) std::printf("\r%*s\r", 100, "");
    } else if (done * 4 / total_ != (done - 1) * 4 / total_ && done != total_) {
      std::printf("epoch %zu/%zu: %zu/%zu batches, %.0f ex/s, running loss %.4f\n", epoch_, epochs_,
                  done, total_, rate, running_loss);
      std::fflush(stdout);
    }
  }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::size_t epoch_, epochs_, total_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  double last_ = -1;
};

std::vector<std::size_t> layer_sizes(const Args& a, std::size_t in, std::size_t out) {
  std::vector<std::size_t> s{in};
  s.insert(s.end(), a.hidden.begin(), a.hidden.end());
  s.push_back(out);
  return s;
}

std::string sizes_str(const std::vector<std::size_t>& s) {
  std::string r;
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? "-" : "") + std::to_string(s[i]);
  return r;
}

void print_confusion(const std::vector<std::size_t>& cm, std::size_t c) {
  std::printf("confusion matrix (rows: true class, columns: predicted)\n%14s", "");
  for (std::size_t j = 0; j < c; ++j) std::printf("%6zu", j);
  std::printf("\n");
  for (std::size_t i = 0; i < c; ++i) {
    std::printf("%2zu %-11s", i, c == 10 ? kFashionClasses[i] : "");
    for (std::size_t j = 0; j < c; ++j) std::printf("%6zu", cm[i * c + j]);
    std::printf("\n");
  }
}

// gnuplot the CSV into a PNG, if gnuplot is installed.
void plot(const std::string& csv, const std::string& png, const char* model) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::printf("gnuplot not found: no plot written (install gnuplot-nox for %s)\n", png.c_str());
    return;
  }
  // gnuplot reads the script from a pipe: no script file is left behind and no path goes
  // through a shell. In gnuplot's single-quoted strings a quote is written twice.
  auto q = [](const std::string& p) {
    std::string r = "'";
    for (char c : p) r += c == '\'' ? std::string("''") : std::string(1, c);
    return r + "'";
  };
  FILE* pipe = popen("gnuplot 2>&1", "w");
  if (!pipe) {
    std::printf("gnuplot failed to start: no plot written\n");
    return;
  }
  std::ostringstream gp;
  gp << "set terminal pngcairo size 1000,420 noenhanced\n"
     << "set output " << q(png) << "\n"
     << "set datafile separator ','\n"
     << "set key autotitle columnhead\n"
     << "set multiplot layout 1,2 title 'wengert-train: Fashion-MNIST " << model << "'\n"
     << "set xlabel 'epoch'\nset ylabel 'loss'\nset grid\n"
     << "plot " << q(csv) << " using 1:2 with linespoints title 'train loss'\n"
     << "set ylabel 'accuracy'\n"
     << "plot " << q(csv) << " using 1:3 with linespoints title 'train accuracy', " << q(csv)
     << " using 1:4 with linespoints title 'test accuracy'\n"
     << "unset multiplot\n";
  const std::string text = gp.str();
  std::fwrite(text.data(), 1, text.size(), pipe);
  if (pclose(pipe) == 0)
    std::printf("plot: %s\n", png.c_str());
  else
    std::printf("gnuplot failed: no plot written\n");
}

// The settings a run is defined by; a checkpoint keeps them ("config.*") so --resume rebuilds
// the same run.
struct Settings {
  std::vector<std::size_t> hidden;
  bool cnn = false;
  nn::Activation activation = nn::Activation::kRelu;
  std::size_t epochs = 0, n = 0, batch = 0;
  double lr = 0;
  bool cosine = true;
  std::uint64_t seed = 0;
  std::uint64_t fingerprint = 0;  // of the training examples used (data_fingerprint)

  void store(nn::StateDict& sd) const {
    std::vector<std::uint64_t> h(hidden.begin(), hidden.end());
    sd.set("config.hidden", Shape{h.size()}, h.data());
    sd.set("config.activation", std::uint64_t{activation == nn::Activation::kTanh ? 1u : 0u});
    sd.set("config.model", std::uint64_t{cnn ? 1u : 0u});
    sd.set("config.epochs", std::uint64_t{epochs});
    sd.set("config.examples", std::uint64_t{n});
    sd.set("config.batch", std::uint64_t{batch});
    sd.set("config.lr", lr);
    sd.set("config.cosine", std::uint64_t{cosine ? 1u : 0u});
    sd.set("config.seed", seed);
    sd.set("config.data_fingerprint", fingerprint);
  }
  static Settings from(const nn::StateDict& sd, const std::string& path) {
    const std::string who = "resume: '" + path + "'";
    Settings s;
    const nn::StateDict::Entry* h = sd.find("extra.config.hidden");
    if (!h || h->dtype() != nn::DType::kUInt64 || h->shape.rank() != 1)
      throw ValueError(who + ": not a wengert-train checkpoint (no config.hidden)");
    for (std::uint64_t v : h->as<std::uint64_t>()) {
      if (v == 0 || v > kMaxHidden)
        throw ValueError(who + ": config.hidden holds " + std::to_string(v));
      s.hidden.push_back(std::size_t(v));
    }
    s.epochs = sd.get_u64("extra.config.epochs", who);
    s.n = sd.get_u64("extra.config.examples", who);
    s.batch = sd.get_u64("extra.config.batch", who);
    s.lr = sd.get_f64("extra.config.lr", who);
    s.cosine = sd.get_u64("extra.config.cosine", who) == 1;
    s.seed = sd.get_u64("extra.config.seed", who);
    s.fingerprint = sd.get_u64("extra.config.data_fingerprint", who);
    const std::uint64_t act = sd.get_u64("extra.config.activation", who);
    // (a checkpoint written before --model existed holds an MLP)
    const std::uint64_t model =
        sd.contains("extra.config.model") ? sd.get_u64("extra.config.model", who) : 0;
    s.cnn = model == 1;
    if (model > 1 || (s.cnn && s.hidden.size() != 3))
      throw ValueError(who + ": config.model is " + std::to_string(model) + " with " +
                       std::to_string(s.hidden.size()) + " hidden sizes: not a valid run's");
    s.activation = act == 1 ? nn::Activation::kTanh : nn::Activation::kRelu;
    if (s.epochs == 0 || s.n == 0 || s.batch == 0 || s.batch > kMaxBatch || !(s.lr > 0) ||
        !std::isfinite(s.lr) || act > 1)
      throw ValueError(who +
                       ": its config (epochs, examples, batch, lr or activation) is not a "
                       "valid run's");
    sd.get<float>("extra.input.norm", Shape{2}, who);  // checked before anything is loaded
    return s;
  }
};

// FNV-1a over the first n labels and images: a resumed run must see the data it started with
// (--data may move, its contents may not).
std::uint64_t data_fingerprint(const io::Dataset<float>& d, std::size_t n) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](const void* p, std::size_t bytes) {
    const auto* c = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < bytes; ++i) h = (h ^ c[i]) * 0x100000001b3ull;
  };
  mix(d.labels.data(), n * sizeof(std::int32_t));
  mix(d.images.pixels.data(), n * d.features() * sizeof(float));
  return h;
}

// The running sums of the epoch in progress and of the run, kept in checkpoints ("progress.*")
// so that a run resumed mid-epoch reports the same epoch figures.
struct RunCounters {
  double loss_sum = 0, seconds_in_epoch = 0, total_secs = 0, test_acc = 0;
  std::size_t seen = 0, correct = 0, seen_before = 0;

  void start_epoch() {
    loss_sum = 0;
    seen = correct = seen_before = 0;
    seconds_in_epoch = 0;
  }
  void store(nn::StateDict& sd) const {
    sd.set("progress.loss_sum", loss_sum);
    sd.set("progress.seen", std::uint64_t{seen});
    sd.set("progress.correct", std::uint64_t{correct});
    sd.set("progress.seconds_in_epoch", seconds_in_epoch);
    sd.set("progress.total_seconds", total_secs);
    sd.set("progress.test_accuracy", test_acc);
  }
  static RunCounters from(const nn::StateDict& sd, const std::string& path) {
    const std::string who = "resume: '" + path + "'";
    RunCounters p;
    p.loss_sum = sd.get_f64("progress.loss_sum", who);
    p.seen = sd.get_u64("progress.seen", who);
    p.correct = sd.get_u64("progress.correct", who);
    p.seconds_in_epoch = sd.get_f64("progress.seconds_in_epoch", who);
    p.total_secs = sd.get_f64("progress.total_seconds", who);
    p.test_acc = sd.get_f64("progress.test_accuracy", who);
    p.seen_before = p.seen;
    return p;
  }
};

// Before any training: the output directory exists and is writable, no output path is a
// directory (a run must not train for an hour and then fail to save), temporary files left by
// an interrupted save are removed, and a new run does not overwrite an old one without --force.
// Which of a run's files `dir` holds.
std::vector<std::string> run_files(const std::string& dir) {
  std::vector<std::string> old;
  for (const char* name : {"metrics.csv", "checkpoint.wgrt", "weights.wgrt"})
    if (std::filesystem::exists(dir + "/" + name)) old.push_back(name);
  return old;
}

void prepare_out(Args& a, bool resuming) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // The default directory is the program's choice: if it holds a run, this one goes beside it.
  if (!resuming && !a.out_given && !a.force && !run_files(a.out).empty()) {
    const std::string base = a.out;
    for (int k = 2; !run_files(a.out).empty(); ++k) a.out = base + "." + std::to_string(k);
    std::printf("%s holds an earlier run: this run writes to %s\n", base.c_str(), a.out.c_str());
  }
  if (resuming && !fs::is_regular_file(a.out + "/checkpoint.wgrt"))
    throw std::runtime_error("--resume " + a.out + ": there is no checkpoint " + a.out +
                             "/checkpoint.wgrt to continue from");
  fs::create_directories(a.out, ec);
  if (ec) throw std::runtime_error("cannot create output directory " + a.out + ": " + ec.message());
  for (const char* name : {"metrics.csv", "weights.wgrt", "checkpoint.wgrt", "metrics.png"}) {
    const std::string path = a.out + "/" + name;
    if (fs::is_directory(path))
      throw std::runtime_error("cannot write " + path +
                               ": it is a directory (nothing was trained; remove it or choose "
                               "another --out)");
  }
  const std::string probe = a.out + "/.wengert-train-write-test";
  {
    std::ofstream f(probe);
    if (!f || !(f << "x") || !f.flush())
      throw std::runtime_error("cannot write in " + a.out + " (nothing was trained)");
  }
  fs::remove(probe, ec);
  for (const char* name : {"checkpoint.wgrt.tmp", "weights.wgrt.tmp", "metrics.csv.tmp"}) {
    const std::string path = a.out + "/" + name;
    if (fs::exists(path)) {
      fs::remove(path, ec);
      std::printf("removed %s, left by a save that was interrupted\n", path.c_str());
    }
  }
  if (resuming) return;
  const std::vector<std::string> old = run_files(a.out);
  if (old.empty()) return;
  if (!a.force) {
    std::string list;
    for (const auto& o : old) list += (list.empty() ? "" : ", ") + o;
    usage_error(a.out + " already holds a run (" + list + "): continue it with --resume " + a.out +
                ", replace it with --force, or choose another --out");
  }
  for (const auto& o : old) fs::remove(a.out + "/" + o, ec);
}

// metrics.csv for this run: a new file with its header, or, when resuming after `epochs_done`
// epochs, the old file without any row past them (rows a killed run wrote after its last
// checkpoint), rewritten atomically; training then appends.
void start_metrics(const std::string& csv, bool resuming, std::uint64_t epochs_done) {
  const std::string header = "epoch,train_loss,train_accuracy,test_accuracy,seconds";
  std::string text = header + "\n";
  if (resuming) {
    std::ifstream in(csv);
    if (!in)
      std::printf("warning: %s is missing: it restarts with this run's epochs\n", csv.c_str());
    std::string line;
    bool first = true;
    while (std::getline(in, line)) {
      if (first) {
        first = false;
        continue;
      }
      const std::uint64_t epoch = std::strtoull(line.c_str(), nullptr, 10);
      if (epoch >= 1 && epoch <= epochs_done) text += line + "\n";
    }
  }
  const std::string tmp = csv + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out || !(out << text) || !out.flush()) throw std::runtime_error("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), csv.c_str()) != 0)
    throw std::runtime_error("cannot rename " + tmp + " to " + csv);
}

int run_fashion(Args& a) {
  if (!a.eval.empty()) {
    // The model comes from the file; --hidden / --activation, if given, must agree with it, and
    // the test labels must be classes it has.
    const train::Architecture arch = train::read_architecture(a.eval);
    std::printf("loading %s\n", a.data.c_str());
    io::Dataset<float> test =
        io::load_mnist_like<float>(a.data, "t10k", std::int32_t(arch.sizes.back()));
    const auto asked = layer_sizes(a, test.features(), arch.sizes.back());
    const char* kind = arch.cnn ? "CNN" : "MLP";
    if (a.model_given && a.cnn != arch.cnn)
      throw ValueError("eval: '" + a.eval + "' holds " + (arch.cnn ? "a CNN" : "an MLP") +
                       " but --model asks for " + (a.cnn ? "a CNN" : "an MLP"));
    if (a.hidden_given && asked != arch.sizes)
      throw ValueError("eval: '" + a.eval + "' holds " + (arch.cnn ? "a " : "an ") + kind + " " +
                       sizes_str(arch.sizes) + " but --hidden asks for " + sizes_str(asked));
    if (a.activation_given && a.activation != arch.activation)
      throw ValueError("eval: '" + a.eval + "' was trained with " +
                       (arch.activation == nn::Activation::kTanh ? "tanh" : "relu") +
                       " but --activation asks for " +
                       (a.activation == nn::Activation::kTanh ? "tanh" : "relu"));
    if (arch.sizes.front() != test.features())
      throw ValueError("eval: '" + a.eval + "' takes " + std::to_string(arch.sizes.front()) +
                       " inputs but the test set's images have " + std::to_string(test.features()) +
                       " pixels");
    train::Classifier clf(arch, a.seed, 1e-3);
    clf.load_weights(a.eval);
    clf.normalize(test);
    std::vector<std::size_t> cm;
    double acc = clf.evaluate(test, &cm);
    std::printf("weights %s (%s %s, %s): test accuracy %.4f on %zu examples\n", a.eval.c_str(),
                kind, sizes_str(arch.sizes).c_str(),
                arch.activation == nn::Activation::kTanh ? "tanh" : "relu", acc, test.size());
    print_confusion(cm, arch.sizes.back());
    return 0;
  }
  std::printf("loading %s\n", a.data.c_str());
  io::Dataset<float> test = io::load_mnist_like<float>(a.data, "t10k");
  io::Dataset<float> trainset = io::load_mnist_like<float>(a.data, "train");
  const bool resuming = !a.resume.empty();
  const bool writer = world_rank() == 0;  // under mpirun, rank 0 alone writes files
  if (writer) prepare_out(a, resuming);   // may choose another --out: the paths follow
  const std::string ckpt = a.out + "/checkpoint.wgrt";
  const std::string csv = a.out + "/metrics.csv";
  const std::string weights = a.out + "/weights.wgrt";

  // The run's settings: from the command line, or from the checkpoint being resumed.
  Settings cfg;
  if (resuming) {
    cfg = Settings::from(nn::load_state(ckpt), ckpt);  // read once more by load_checkpoint
  } else {
    cfg.hidden = a.hidden;
    cfg.cnn = a.cnn;
    cfg.activation = a.activation;
    cfg.epochs = a.epochs;
    cfg.n = a.limit ? std::min(a.limit, trainset.size()) : trainset.size();
    // A batch larger than the training rows is one batch of all of them: allocate only that.
    cfg.batch = std::min(a.batch, std::max<std::size_t>(cfg.n, 1));
    cfg.lr = a.lr > 0 ? a.lr : 1e-3;
    cfg.cosine = a.cosine;
    cfg.seed = a.seed;
  }
  if (cfg.n > trainset.size())
    throw ValueError("resume: '" + ckpt + "' trained on " + std::to_string(cfg.n) +
                     " examples but '" + a.data + "' holds " + std::to_string(trainset.size()));
  const std::uint64_t fingerprint = data_fingerprint(trainset, cfg.n);
  if (resuming && fingerprint != cfg.fingerprint)
    throw ValueError("resume: the first " + std::to_string(cfg.n) + " training examples in '" +
                     a.data + "' are not the ones '" + ckpt + "' was trained on");
  cfg.fingerprint = fingerprint;
  const std::size_t n = cfg.n, batch = cfg.batch;
  Args shown = a;
  shown.hidden = cfg.hidden;
  const auto sizes = layer_sizes(shown, trainset.features(), std::size_t(trainset.num_classes));
  std::printf(
      "%s %s, %s, Adam lr %g (%s), batch %zu, %zu epochs, %zu training / %zu test examples\n",
      cfg.cnn ? "CNN" : "MLP", sizes_str(sizes).c_str(),
      cfg.activation == nn::Activation::kRelu ? "relu" : "tanh", cfg.lr,
      cfg.cosine ? "cosine decay" : "constant", batch, cfg.epochs, n, test.size());

  io::Batcher<float> batches(trainset.images.pixels.data(), trainset.labels.data(), n,
                             trainset.features(), batch, cfg.seed);
  const std::uint64_t per_epoch = batches.batches_per_epoch();
  train::Classifier clf(train::Architecture{sizes, cfg.activation, cfg.cnn}, cfg.seed, cfg.lr,
                        cfg.cosine ? cfg.epochs * per_epoch : 0);
  nn::TrainingPosition at{cfg.seed, 0, 0};
  RunCounters progress;
  if (resuming) {
    nn::StateDict extra;
    at = clf.load_checkpoint(ckpt, extra);
    progress = RunCounters::from(extra, ckpt);
    std::printf("resuming %s at epoch %llu, batch %llu of %llu\n", ckpt.c_str(),
                (unsigned long long)at.epoch + 1, (unsigned long long)at.batch,
                (unsigned long long)per_epoch);
  } else {
    clf.fit_input_norm(trainset, n);
  }
  clf.normalize(trainset);
  clf.normalize(test);
  // Data parallelism: threads in this process, ranks under mpirun (each its shard of a batch).
  clf.set_threads(a.threads);
#if WENGERT_HAVE_MPI
  std::unique_ptr<dist::MpiGradients<float>> sync;
  if (world_size() > 1) {
    sync = std::make_unique<dist::MpiGradients<float>>(clf.model());  // checks, broadcasts
    clf.set_mpi(sync.get());
  }
#endif
  if (a.threads > 1 || world_size() > 1)
    std::printf("data parallel: %d rank%s x %zu thread%s; --batch %zu is the global batch\n",
                world_size(), world_size() > 1 ? "s" : "", a.threads, a.threads > 1 ? "s" : "",
                batch);
  std::ofstream metrics;
  if (writer) {
    start_metrics(csv, resuming, at.epoch);
    metrics.open(csv, std::ios::app);
    if (!metrics) throw std::runtime_error("cannot write " + csv);
  }

  // Everything a resumed run needs besides the model, optimizer and schedule.
  auto save = [&](const nn::TrainingPosition& pos) {
    if (!writer) return;
    nn::StateDict extra;
    cfg.store(extra);
    progress.store(extra);
    clf.save_checkpoint(ckpt, pos, extra);
  };
  std::size_t epochs_run = 0;
  double train_seconds = 0;  // this run's training time, test evaluation excluded
  for (std::size_t epoch = at.epoch + 1; epoch <= cfg.epochs; ++epoch) {
    batches.start_epoch(epoch - 1);
    std::size_t done = 0;
    if (epoch == at.epoch + 1 && at.batch > 0) {
      batches.skip(at.batch);  // the batches trained before the checkpoint
      done = at.batch;
    } else {
      progress.start_epoch();
    }
    Progress bar(epoch, cfg.epochs, per_epoch);
    while (batches.advance()) {  // the training step gathers the rows, shard by shard
      const std::size_t m = batches.size();
      progress.loss_sum += double(clf.train_step(batches, &progress.correct)) * m;
      progress.seen += m;
      bar.update(++done, progress.seen, progress.loss_sum / progress.seen);
      if (a.checkpoint_every && done % a.checkpoint_every == 0 && done < per_epoch) {
        progress.seconds_in_epoch += bar.seconds();
        save({cfg.seed, epoch - 1, done});
        progress.seconds_in_epoch -= bar.seconds();
      }
    }
    const double train_secs = bar.seconds();
    train_seconds += train_secs;
    progress.test_acc = clf.evaluate(test);
    const double secs = bar.seconds() + progress.seconds_in_epoch;
    progress.total_secs += secs;
    const double loss = progress.loss_sum / progress.seen;
    const double acc = double(progress.correct) / progress.seen;
    std::printf(
        "epoch %2zu/%zu  train loss %.4f  train acc %.4f  test acc %.4f  %.1f s "
        "(%.0f ex/s training)\n",
        epoch, cfg.epochs, loss, acc, progress.test_acc, secs,
        double(progress.seen - progress.seen_before) / train_secs);
    std::fflush(stdout);
    if (writer) {
      metrics << epoch << ',' << loss << ',' << acc << ',' << progress.test_acc << ',' << secs
              << '\n';
      metrics.flush();
    }
    progress.start_epoch();
    save({cfg.seed, epoch, 0});
    if (a.stop_after && ++epochs_run == a.stop_after && epoch < cfg.epochs) {
      std::printf(
          "stopped after epoch %zu of %zu (--stop-after %zu); checkpoint: %s\n"
          "continue with: wengert-train --resume %s\n",
          epoch, cfg.epochs, a.stop_after, ckpt.c_str(), a.out.c_str());
      return 0;
    }
  }
  if (!writer) return 0;
  metrics.close();
  nn::save_state(weights, clf.weights());
  std::printf("final test accuracy %.4f after %zu epochs, %.1f s (%.1f s per epoch)\n",
              progress.test_acc, cfg.epochs, progress.total_secs,
              progress.total_secs / double(cfg.epochs));
  const dist::StepTimes t = clf.step_times();
  if (t.steps > 0) {  // data parallel: where the time of rank 0's (calling thread's) steps went
    const double ms = 1e3 / double(t.steps);
    const double rest =
        train_seconds - t.compute - t.wait - t.reduce - t.pack - t.allreduce - t.optimizer;
    std::printf(
        "time per step (rank 0, calling thread): %.3f ms = compute %.3f + waiting %.3f + "
        "reduce %.3f + pack %.3f + allreduce %.3f + optimizer %.3f + rest %.3f (batching, "
        "progress)\n",
        train_seconds * ms, t.compute * ms, t.wait * ms, t.reduce * ms, t.pack * ms,
        t.allreduce * ms, t.optimizer * ms, rest * ms);
  }
  std::printf("metrics: %s\nweights: %s  (evaluate: wengert-train --eval %s)\n", csv.c_str(),
              weights.c_str(), weights.c_str());
  plot(csv, a.out + "/metrics.png", cfg.cnn ? "CNN" : "MLP");
  return 0;
}

int run_binary(const Args& a) {
  std::vector<float> x, y;
  std::vector<std::size_t> sizes;
  std::size_t steps;
  double lr;
  if (a.mode == "seed004") {
    train::make_seed004_data(400, a.seed, x, y);
    sizes = {3, 4, 3, 1};
    steps = a.steps ? a.steps : 3000;
    lr = a.lr > 0 ? a.lr : 0.5;
    std::printf(
        "seed 004: 3-4-3-1 network (tanh, tanh, sigmoid), binary cross-entropy, gradient "
        "descent lr %g, 400 points in 3-D (class 1 outside radius 1.54)\n",
        lr);
  } else {
    x = {0, 0, 0, 1, 1, 0, 1, 1};
    y = {0, 1, 1, 0};
    sizes = {2, 4, 1};
    steps = a.steps ? a.steps : 2000;
    lr = a.lr > 0 ? a.lr : 1.0;
    std::printf(
        "XOR: 2-4-1 network (tanh, sigmoid), binary cross-entropy, gradient descent "
        "lr %g\n",
        lr);
  }
  // Ten reports over the run, or one per step for fewer than ten steps.
  auto run = train::train_binary(
      sizes, x, y, steps, lr, a.seed, std::max<std::size_t>(1, steps / 10),
      [](std::size_t step, double loss) { std::printf("step %5zu  loss %.6f\n", step, loss); });
  std::printf("final loss %.6f, training accuracy %.4f\n", run.final_loss, run.accuracy);
  return 0;
}

}  // namespace

// Fault injection for the crash tests (tests/apps/cli_check.cmake): WENGERT_FAULT_KILL_SAVE=K:STAGE
// SIGKILLs this process during its K-th file save (1-based), at STAGE: mid (half a megabyte into
// the temporary file), written, synced (fsync'ed, not yet renamed) or renamed.
void install_fault_injection() {
  const char* spec = std::getenv("WENGERT_FAULT_KILL_SAVE");
  if (!spec) return;
  static long target = 0;
  static nn::detail::SaveStage stage;
  static long saves = 0;
  const std::string s = spec;
  const auto colon = s.find(':');
  const std::string st = colon == std::string::npos ? "" : s.substr(colon + 1);
  const std::string k = s.substr(0, colon == std::string::npos ? s.size() : colon);
  if (k.empty() || k.find_first_not_of("0123456789") != std::string::npos)
    usage_error("WENGERT_FAULT_KILL_SAVE must be K:STAGE with K a save count, got '" + s + "'");
  target = std::atol(k.c_str());
  if (st == "mid")
    stage = nn::detail::SaveStage::kMidData;
  else if (st == "written")
    stage = nn::detail::SaveStage::kWritten;
  else if (st == "synced")
    stage = nn::detail::SaveStage::kSynced;
  else if (st == "renamed")
    stage = nn::detail::SaveStage::kRenamed;
  else
    usage_error("WENGERT_FAULT_KILL_SAVE must be K:mid|written|synced|renamed, got '" + s + "'");
  nn::detail::set_save_hook([](nn::detail::SaveStage at) {
    // The first stage reached by each save counts it (mid is reached only by large files).
    static bool counted_this_save = false;
    if (!counted_this_save) {
      ++saves;
      counted_this_save = true;
    }
    if (saves == target && at == stage) std::raise(SIGKILL);
    if (at == nn::detail::SaveStage::kRenamed) counted_this_save = false;
  });
}

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  install_fault_injection();
#if WENGERT_HAVE_MPI
  // Under mpirun (and only then) MPI is initialised; ranks other than 0 print nothing but errors.
  if (dist::MpiSession::launched()) {
    g_mpi = std::make_unique<dist::MpiSession>(&argc, &argv);
    if (g_mpi->rank() != 0 && !std::freopen("/dev/null", "w", stdout))
      std::cerr << "wengert-train: rank " << g_mpi->rank() << ": cannot silence stdout\n";
  }
#endif
  try {
    return a.mode == "fashion" ? run_fashion(a) : run_binary(a);
  } catch (const std::bad_alloc&) {
    // The flags' limits keep single values sane; their product can still exceed the machine.
    const char* msg =
        "wengert-train: out of memory (memory grows with the --hidden sizes and the --batch "
        "size: try smaller ones)";
#if WENGERT_HAVE_MPI
    if (world_size() > 1) g_mpi->abort(msg);
#endif
    std::cerr << msg << "\n";
    return 1;
  } catch (const std::exception& e) {
#if WENGERT_HAVE_MPI
    // The other ranks may be waiting for this one in a collective: end them all.
    if (world_size() > 1) g_mpi->abort(std::string("wengert-train: ") + e.what());
#endif
    std::cerr << "wengert-train: " << e.what() << "\n";
    return 1;
  }
}
