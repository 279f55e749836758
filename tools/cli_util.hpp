// Small parsing helpers shared by the CLI subcommands; errors become CLI::ValidationError so the
// user sees which flag was wrong. Also the range checks every command applies to the flags they
// share (threads, context, sampling), so a bad value is a CLI error naming the flag rather than a
// hang, a NaN or silently empty output.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>

#include <unistd.h>

#include <CLI/CLI.hpp>

#include "common/error.hpp"
#include "common/units.hpp"
#include "engine/sampling.hpp"
#include "io/backend.hpp"
#include "model/pack_writer.hpp"

namespace sluice {

// Prompt and text files are read whole; past this a file is refused (a prompt this long cannot
// fit any context, and `-f /dev/zero` must not grow until the OOM killer stops it).
inline constexpr std::uint64_t kMaxTextFileBytes = 64ull << 20;

// A whole file as text, at most `max_bytes`; throws std::runtime_error naming it when it cannot be
// read or is longer.
inline std::string read_text_file(const std::string& path, std::uint64_t max_bytes = kMaxTextFileBytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  std::string text;
  char buf[1 << 16];
  while (in) {
    in.read(buf, sizeof buf);
    text.append(buf, std::size_t(in.gcount()));
    if (text.size() > max_bytes) {
      throw std::runtime_error(fmt::format("{} is longer than {}: not read (is it the right file?)", path, format_bytes(max_bytes)));
    }
  }
  if (in.bad()) throw std::runtime_error(fmt::format("reading {} failed", path));
  return text;
}

inline std::uint64_t parse_size_option(const std::string& flag, const std::string& text) {
  auto bytes = parse_bytes(text);
  if (!bytes || *bytes == 0) throw CLI::ValidationError(flag, "expected a size like 4GiB, 512MiB or 1048576, got '" + text + "'");
  return *bytes;
}

// A typo is an error naming the flag, never a silent default.
inline io::BackendKind parse_backend(const std::string& text) {
  if (text == "uring") return io::BackendKind::uring;
  if (text == "pread") return io::BackendKind::pread;
  if (text == "auto") return io::BackendKind::automatic;
  throw CLI::ValidationError("--io", "expected auto, uring or pread, got '" + text + "'");
}

inline pack::WriterOptions::Compress parse_compress(const std::string& text) {
  if (text == "none") return pack::WriterOptions::Compress::none;
  if (text == "zstd") return pack::WriterOptions::Compress::zstd;
  if (text == "auto") return pack::WriterOptions::Compress::auto_;
  throw CLI::ValidationError("--compress", "expected auto, none or zstd, got '" + text + "'");
}

// A finite number in [lo, hi], or in (lo, hi] with `lo_excluded` (CLI::Range lets NaN through:
// every comparison with it is false).
inline CLI::Validator finite_number(double lo, double hi, bool lo_excluded, const std::string& why) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double v = 0;
        try {
          std::size_t used = 0;
          v = std::stod(text, &used);
          if (used != text.size()) return "expected a number, got '" + text + "'";
        } catch (const std::exception&) {
          return "expected a number, got '" + text + "'";
        }
        if (!std::isfinite(v) || (lo_excluded ? v <= lo : v < lo) || v > hi) {
          return fmt::format("must be {} {} and at most {}{}, got {}", lo_excluded ? "above" : "at least", lo, hi,
                             why.empty() ? "" : " (" + why + ")", text);
        }
        return {};
      },
      fmt::format("FLOAT in {}{} - {}]", lo_excluded ? "(" : "[", lo, hi));
}
inline CLI::Validator finite_in(double lo, double hi, const std::string& why = "") { return finite_number(lo, hi, false, why); }
inline CLI::Validator finite_above(double lo, double hi, const std::string& why = "") { return finite_number(lo, hi, true, why); }

// Most worker threads accepted: the cores this process may use. More only oversubscribes the
// cores (and TBB prints a warning into the terminal, amid the generated text).
inline int max_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1024 : int(n);
}

inline CLI::Option* add_threads_option(CLI::App* cmd, int& threads) {
  return cmd->add_option("-t,--threads", threads, fmt::format("Worker threads (0: all {} cores)", max_threads()))
      ->capture_default_str()
      ->check(CLI::Range(0, max_threads()).description(fmt::format("INT in [0 - {}] (the cores here)", max_threads())));
}

// The sampling flags of `run` (llama.cpp's names), each range-checked. -s/--seed goes to `seed`:
// -1 (the default, as in llama.cpp) asks for a random seed, which resolve_seed picks and prints.
inline void add_sampling_options(CLI::App* cmd, SamplingParams& s, std::int64_t& seed) {
  cmd->add_option("--temp", s.temperature, "Temperature (0: greedy)")->capture_default_str()->check(finite_in(0, 100));
  cmd->add_option("--top-k", s.top_k, "Top-k (0: off)")->capture_default_str()->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--top-p", s.top_p, "Top-p (1: off)")->capture_default_str()->check(finite_in(0, 1));
  cmd->add_option("--min-p", s.min_p, "Min-p (0: off)")->capture_default_str()->check(finite_in(0, 1));
  cmd->add_option("--repeat-penalty", s.repeat_penalty, "Repetition penalty (1: off)")
      ->capture_default_str()
      ->check(finite_above(0, 100, "it divides positive logits"));
  cmd->add_option("--repeat-last-n", s.repeat_last_n, "Tokens the penalty looks back over (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 24));
  cmd->add_option("-s,--seed", seed, "RNG seed (each prompt uses it); -1: a random one, printed so the run can be repeated")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t(-1), std::numeric_limits<std::int64_t>::max()));
}

// The seed a run samples with: `seed` when given (>= 0), else a random one (32 bits, as
// llama.cpp's). Where the run samples (temperature > 0) one line on `log` says which, so that a
// random run can be repeated with -s; greedy runs use no seed and print nothing.
inline std::uint64_t resolve_seed(std::int64_t seed, float temperature, std::ostream& log) {
  const bool random = seed < 0;
  const std::uint64_t used = random ? std::uint64_t(std::random_device{}()) : std::uint64_t(seed);
  if (temperature > 0) {
    log << (random ? fmt::format("seed: {} (random; -s {} repeats this run)\n", used, used) : fmt::format("seed: {}\n", used));
  }
  return used;
}

// The line a front-end prints for an operating error: the message (which names the file and
// offset), then its kind and whatever of its context the message does not already say.
inline std::string error_text(const Exception& e) {
  const ErrorContext& c = e.context();
  std::string text = e.what();
  std::string facts = fmt::format("{} error", to_string(c.kind));
  if (!c.file.empty() && text.find(c.file) == std::string::npos) facts += fmt::format(", file {}", c.file);
  if (!c.extent.empty() && text.find(c.extent) == std::string::npos) facts += fmt::format(", extent {}", c.extent);
  if (c.frame >= 0) facts += fmt::format(", frame {}", c.frame);
  // "offset N" as the message words it, not just the digits: a temporary path may hold them.
  if (c.offset >= 0 && text.find(fmt::format("offset {}", c.offset)) == std::string::npos) {
    facts += fmt::format(", offset {}", c.offset);
  }
  return fmt::format("{} [{}]", text, facts);
}

// Standard output, checked: a full disk or /dev/full is an error (exit 1), never text lost with
// exit 0. Call after writing what matters, and main() calls it before exiting.
inline void check_stdout() {
  std::cout.flush();
  errno = 0;
  const bool failed = !std::cout || std::fflush(stdout) != 0 || std::ferror(stdout);
  if (failed) {
    const int err = errno;
    std::cout.clear();
    throw Exception(ErrorContext{ErrorKind::io, "standard output", {}, -1, -1, err},
                    fmt::format("writing to standard output failed: {}", err ? std::strerror(err) : "write error"));
  }
}

// "45s", "3m05s", "1h02m": a duration as a person reads it on a progress line.
inline std::string format_duration(double seconds) {
  const auto s = static_cast<std::uint64_t>(std::max(0.0, seconds) + 0.5);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
}

// Progress of a long read, copy or write on stderr, for inputs of at least `min_bytes`: on a
// terminal one line rewritten per 1%; in a log (stderr not a terminal) one line per 10%, so a
// 100 GB model's log stays short and readable. Each line says the bytes done of the total, the
// mean rate since the printer was made (MB/s, 10^6 bytes) and the time left at that rate.
inline std::function<void(std::uint64_t, std::uint64_t)> progress_printer(std::string what, std::uint64_t min_bytes) {
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  auto last = std::make_shared<int>(-1);
  const auto started = std::chrono::steady_clock::now();
  return [what = std::move(what), min_bytes, tty, last, started](std::uint64_t done, std::uint64_t total) {
    if (total < min_bytes || total == 0) return;
    const int percent = static_cast<int>(done * 100 / total);
    const int step = tty ? percent : percent / 10 * 10;
    if (step == *last) return;
    *last = step;
    std::string line = fmt::format("{}: {} of {} ({}%)", what, format_bytes(done), format_bytes(total), percent);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (done > 0 && seconds > 0) {
      const double bytes_per_second = double(done) / seconds;
      line += fmt::format(", {:.0f} MB/s, ", bytes_per_second / 1e6);
      line += done == total ? fmt::format("took {}", format_duration(seconds))
                            : fmt::format("ETA {}", format_duration(double(total - done) / bytes_per_second));
    }
    if (tty) {
      // Padding covers the tail of a longer line before (the ETA's width changes).
      std::cerr << '\r' << fmt::format("{:<79}", line) << (done == total ? "\n" : "") << std::flush;
    } else {
      std::cerr << line << '\n' << std::flush;
    }
  };
}

}  // namespace sluice
