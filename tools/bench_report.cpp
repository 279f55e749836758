#include "tools/bench_report.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace sluice {

std::optional<BenchFormat> parse_bench_format(const std::string& name) {
  if (name == "md") return BenchFormat::md;
  if (name == "csv") return BenchFormat::csv;
  if (name == "json") return BenchFormat::json;
  if (name == "jsonl") return BenchFormat::jsonl;
  return std::nullopt;
}

double bench_mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0.0 : sum / double(v.size());
}

double bench_stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double mean = bench_mean(v);
  double sq = 0;
  for (double x : v) sq += (x - mean) * (x - mean);
  return std::sqrt(sq / double(v.size() - 1));
}

std::string format_params(std::uint64_t n) {
  return n >= 1'000'000'000 ? fmt::format("{:.2f} B", double(n) / 1e9) : fmt::format("{:.2f} M", double(n) / 1e6);
}

std::string format_gib(std::uint64_t bytes) { return fmt::format("{:.2f} GiB", double(bytes) / double(1ull << 30)); }

namespace {

// Display width of UTF-8 text ("±" is one column, two bytes): the md table's padding.
std::size_t display_width(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

struct Column {
  std::string header;
  bool left = false;  // text columns (model, backend, mode) left-aligned as llama-bench's
};

// The md/csv columns: llama-bench's, then sluice's where any row has them.
std::vector<Column> columns(const BenchReport& r) {
  std::vector<Column> c = {{"model", true}, {"size"}, {"params"}, {"backend", true}, {"threads"}};
  const bool batched = std::any_of(r.rows.begin(), r.rows.end(), [](const BenchRow& row) { return row.n_seq != 1; });
  const bool streamed = std::any_of(r.rows.begin(), r.rows.end(), [](const BenchRow& row) { return row.streamed; });
  if (batched) c.push_back({"batch"});
  c.push_back({"test"});
  c.push_back({"t/s"});
  if (streamed) {
    for (const char* h : {"mode", "s/pass", "read GB/s", "overlap", "io busy"}) c.push_back({h, std::string(h) == "mode"});
  }
  if (r.speculative) {
    c.push_back({"tok/step"});
    c.push_back({"accept"});
  }
  return c;
}

std::string cell(const BenchReport& r, const BenchRow& row, const std::string& header) {
  auto opt = [](double v, const char* f) { return v < 0 ? std::string("-") : fmt::format(fmt::runtime(f), v); };
  if (header == "model") return r.model.type;
  if (header == "size") return format_gib(r.model.size);
  if (header == "params") return format_params(r.model.n_params);
  if (header == "backend") return r.model.backend;
  if (header == "threads") return std::to_string(r.model.n_threads);
  if (header == "batch") return std::to_string(row.n_seq);
  if (header == "test") return row.test;
  if (header == "t/s") return fmt::format("{:.2f} ± {:.2f}", bench_mean(row.samples_ts), bench_stddev(row.samples_ts));
  if (header == "mode") return row.mode;
  if (header == "s/pass") return opt(row.s_per_pass, "{:.3f}");
  if (header == "read GB/s") return opt(row.read_gbps, "{:.2f}");
  if (header == "overlap") return opt(row.overlap, "{:.3f}");
  if (header == "io busy") return row.io_busy < 0 ? "-" : fmt::format("{:.0f}%", 100.0 * row.io_busy);
  if (header == "tok/step") return row.tokens_per_step ? fmt::format("{:.2f}", *row.tokens_per_step) : "-";
  if (header == "accept") return row.acceptance ? fmt::format("{:.1f}%", 100.0 * *row.acceptance) : "-";
  return "";
}

void print_md(const BenchReport& r, std::ostream& out) {
  const std::vector<Column> cols = columns(r);
  std::vector<std::vector<std::string>> cells;
  std::vector<std::size_t> width;
  for (const Column& c : cols) width.push_back(std::max<std::size_t>(display_width(c.header), 3));
  for (const BenchRow& row : r.rows) {
    std::vector<std::string> line;
    for (std::size_t i = 0; i < cols.size(); ++i) {
      line.push_back(cell(r, row, cols[i].header));
      width[i] = std::max(width[i], display_width(line.back()));
    }
    cells.push_back(std::move(line));
  }
  auto pad = [&](const std::string& s, std::size_t i) {
    const std::string fill(width[i] - display_width(s), ' ');
    return cols[i].left ? s + fill : fill + s;
  };
  std::string header = "|", rule = "|";
  for (std::size_t i = 0; i < cols.size(); ++i) {
    // Appended piece by piece: `"lit" + std::string&&` trips GCC 12's -Wrestrict (PR105329).
    header += ' ';
    header += pad(cols[i].header, i);
    header += " |";
    rule += ' ';
    rule += cols[i].left ? std::string(width[i], '-') : std::string(width[i] - 1, '-') + ":";
    rule += " |";
  }
  out << header << '\n' << rule << '\n';
  for (const auto& line : cells) {
    out << '|';
    for (std::size_t i = 0; i < cols.size(); ++i) out << ' ' << pad(line[i], i) << " |";
    out << '\n';
  }
}

nlohmann::ordered_json row_json(const BenchReport& r, const BenchRow& row) {
  std::vector<double> samples_ns;
  for (double ts : row.samples_ts) samples_ns.push_back(ts > 0 ? row.tokens_per_sample / ts * 1e9 : 0.0);
  auto or_null = [](double v) { return v < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(v); };
  nlohmann::ordered_json j;
  j["build_commit"] = r.build_commit;
  j["sluice_version"] = r.version;
  j["model_filename"] = r.model.filename;
  j["model_type"] = r.model.type;
  j["model_size"] = r.model.size;
  j["model_n_params"] = r.model.n_params;
  j["backends"] = r.model.backend;
  j["n_threads"] = r.model.n_threads;
  j["n_seq"] = row.n_seq;
  j["n_prompt"] = row.n_prompt;
  j["n_gen"] = row.n_gen;
  j["test_time"] = r.test_time;
  j["avg_ns"] = std::llround(bench_mean(samples_ns));
  j["stddev_ns"] = std::llround(bench_stddev(samples_ns));
  j["avg_ts"] = bench_mean(row.samples_ts);
  j["stddev_ts"] = bench_stddev(row.samples_ts);
  j["samples_ns"] = samples_ns;
  j["samples_ts"] = row.samples_ts;
  j["test"] = row.test;
  j["mode"] = row.mode;
  j["streamed"] = row.streamed;
  j["s_per_pass"] = or_null(row.s_per_pass);
  j["read_gbps"] = or_null(row.read_gbps);
  j["overlap"] = or_null(row.overlap);
  j["io_busy"] = or_null(row.io_busy);
  if (r.speculative) {
    j["tokens_per_step"] = row.tokens_per_step ? nlohmann::ordered_json(*row.tokens_per_step) : nlohmann::ordered_json(nullptr);
    j["acceptance"] = row.acceptance ? nlohmann::ordered_json(*row.acceptance) : nlohmann::ordered_json(nullptr);
  }
  return j;
}

// csv: a header of the json fields, every value quoted as llama-bench writes them; arrays as
// space-separated numbers.
void print_csv(const BenchReport& r, std::ostream& out) {
  std::vector<nlohmann::ordered_json> rows;
  for (const BenchRow& row : r.rows) rows.push_back(row_json(r, row));
  if (rows.empty()) return;
  auto quote = [](const std::string& s) {
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  auto text = [](const nlohmann::ordered_json& v) -> std::string {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_null()) return "";
    if (v.is_array()) {
      std::string s;
      for (const auto& x : v) {
        if (!s.empty()) s += ' ';
        s += x.dump();
      }
      return s;
    }
    return v.dump();
  };
  bool first = true;
  for (const auto& [key, value] : rows.front().items()) {
    out << (first ? "" : ",") << key;
    first = false;
  }
  out << '\n';
  for (const auto& row : rows) {
    first = true;
    for (const auto& [key, value] : row.items()) {
      out << (first ? "" : ",") << quote(text(value));
      first = false;
    }
    out << '\n';
  }
}

}  // namespace

void print_bench_report(const BenchReport& r, BenchFormat format, std::ostream& out) {
  switch (format) {
    case BenchFormat::md:
      print_md(r, out);
      return;
    case BenchFormat::csv:
      print_csv(r, out);
      return;
    case BenchFormat::json: {
      nlohmann::ordered_json all = nlohmann::ordered_json::array();
      for (const BenchRow& row : r.rows) all.push_back(row_json(r, row));
      out << all.dump(2) << '\n';
      return;
    }
    case BenchFormat::jsonl:
      for (const BenchRow& row : r.rows) out << row_json(r, row).dump() << '\n';
      return;
  }
}

}  // namespace sluice
