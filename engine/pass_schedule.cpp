#include "engine/pass_schedule.hpp"

#include <fmt/format.h>

#include "common/assert.hpp"
#include "common/error.hpp"

namespace sluice {

PassSchedule::PassSchedule(std::unique_ptr<prefetch::Prefetcher> prefetcher) : prefetcher_(std::move(prefetcher)) {
  SLUICE_ASSERT(prefetcher_ != nullptr);
}

void PassSchedule::append(std::uint32_t unit) {
  prefetcher_->append(unit);
  queued_.push_back(unit);
}

prefetch::ExtentHandle PassSchedule::take(std::uint32_t unit) {
  SLUICE_ASSERT_MSG(!queued_.empty() && queued_.front() == unit, "a pass takes the units it appended, in order");
  queued_.pop_front();
  const auto started = std::chrono::steady_clock::now();
  auto next = prefetcher_->next();
  wait_ += std::chrono::steady_clock::now() - started;
  if (!next) throw prefetch::to_exception(next.error(), prefetcher_->path());
  prefetch::ExtentHandle handle = std::move(next).value();
  if (handle.extent() != unit) {
    const auto& units = prefetcher_->extents();
    const std::string& expected = units[unit].name;
    const std::string& delivered = units[handle.extent()].name;
    throw Exception(ErrorContext{ErrorKind::corrupt, prefetcher_->path(), expected, -1,
                                 std::int64_t(units[handle.extent()].offset), 0},
                    fmt::format("{}: the schedule delivered unit {} ({}, file offset {}) where the pass binds unit {} ({})",
                                prefetcher_->path(), handle.extent(), delivered, units[handle.extent()].offset, unit,
                                expected));
  }
  return handle;
}

void PassSchedule::reset() {
  prefetcher_->reset();
  queued_.clear();
}

}  // namespace sluice
