// Plain-text tables for CLI reports (demo, planner, bench): columns padded to their widest cell.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace sluice {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add_row(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Column 0 left-aligned, the rest right-aligned (they are numbers).
  void print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace sluice
