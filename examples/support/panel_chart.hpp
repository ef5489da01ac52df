// SPDX-License-Identifier: BSL-1.0
// The demos' charts: panels stacked over one time axis, as SVG. Each panel has
// its scenario's phases shaded and named, a grid, and one line per series.
// Only the demos use it; it is not part of keel.
#ifndef KEEL_EXAMPLES_SUPPORT_PANEL_CHART_HPP_INCLUDED
#define KEEL_EXAMPLES_SUPPORT_PANEL_CHART_HPP_INCLUDED

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/core.h>

namespace keel_examples {

/// Line looks for five series, drawn in this order: a wide grey one beneath,
/// keel's last and on top.
inline constexpr std::array<const char*, 5> five_lines{
    R"(stroke="#9a9a9a" stroke-width="6")",
    R"(stroke="#d62728" stroke-width="2" stroke-dasharray="7 4")",
    R"(stroke="#ff7f0e" stroke-width="2.5")",
    R"(stroke="#2ca02c" stroke-width="2.5" stroke-dasharray="2 3")",
    R"(stroke="#1f77b4" stroke-width="2.5")"};

/// A stretch of the scenario, in seconds, shaded under every panel.
struct chart_phase {
  double begins = 0;
  double ends = 0;
  std::string name;
  std::string shade;  ///< fill colour
};

/// Writes `panels` panels over [0, seconds] to `path`. Draw each panel with
/// panel() and then its lines with line(), then the time axis and the legend,
/// and close().
class panel_chart {
 public:
  panel_chart(const std::string& path, std::string_view title, double seconds, std::size_t panels,
              double panel_height)
      : out_(std::fopen(path.c_str(), "w")),
        seconds_(seconds),
        panels_(panels),
        panel_height_(panel_height),
        height_(first_top + static_cast<double>(panels) * (panel_height + panel_gap) + 50) {
    if (out_ == nullptr) throw std::runtime_error("cannot write " + path);
    fmt::print(out_,
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
               "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
               "<text x=\"{2}\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{3}</text>\n",
               width, height_, left, title);
  }
  panel_chart(const panel_chart&) = delete;
  panel_chart& operator=(const panel_chart&) = delete;
  ~panel_chart() {
    if (out_ != nullptr) std::fclose(out_);
  }

  /// Ends the chart and closes its file.
  void close() {
    fmt::print(out_, "</svg>\n");
    std::fclose(std::exchange(out_, nullptr));
  }

  /// Starts panel `k`: its phases, its grid from 0 to `y_max` every `y_step`
  /// (labels end in `unit`), its frame and its title.
  void panel(std::size_t k, std::string_view title, std::string_view unit, double y_max,
             double y_step, const std::vector<chart_phase>& phases) {
    top_ = first_top + static_cast<double>(k) * (panel_height_ + panel_gap);
    y_max_ = y_max;
    const double bottom = top_ + panel_height_;
    for (const chart_phase& p : phases) {
      const double x0 = x_at(p.begins);
      const double x1 = x_at(p.ends);
      fmt::print(out_, "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>\n", x0,
                 top_, x1 - x0, panel_height_, p.shade);
      fmt::print(out_, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">{}</text>\n",
                 (x0 + x1) / 2, top_ - 6, p.name);
    }
    for (double v = 0; v <= y_max + 1e-9; v += y_step) {
      fmt::print(out_,
                 "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#ddd\"/>\n"
                 "<text x=\"{3}\" y=\"{4}\" text-anchor=\"end\">{5:g}{6}</text>\n",
                 left, y_at(v), right, left - 6, y_at(v) + 4, v, unit);
    }
    fmt::print(
        out_,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n"
        "<text transform=\"translate(18 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
        left, top_, right - left, panel_height_, (top_ + bottom) / 2, title);
  }

  /// A line in the current panel: values[b] at the middle of bucket b, each
  /// `bucket_seconds` long; `look` is the polyline's stroke attributes.
  void line(const std::vector<double>& values, double bucket_seconds, std::string_view look) {
    std::string points;
    for (std::size_t b = 0; b < values.size(); ++b) {
      points += fmt::format("{:.1f},{:.1f} ", x_at(bucket_seconds * (static_cast<double>(b) + 0.5)),
                            y_at(values[b]));
    }
    fmt::print(out_, "<polyline points=\"{}\" fill=\"none\" {}/>\n", points, look);
  }

  /// The time axis under the last panel, a label every `step` seconds.
  void time_axis(double step) {
    const double last_bottom = first_top + static_cast<double>(panels_) * panel_height_ +
                               static_cast<double>(panels_ - 1) * panel_gap;
    for (double s = 0; s <= seconds_; s += step) {
      fmt::print(out_, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{:g}</text>\n", x_at(s),
                 last_bottom + 16, s);
    }
    fmt::print(out_, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">virtual time (s)</text>\n",
               (left + right) / 2, last_bottom + 32);
  }

  /// A legend entry at the bottom, `offset` pixels from the left edge of the panels.
  void legend(double offset, std::string_view look, std::string_view text) {
    const double lx = left + offset;
    const double y = height_ - 16;
    fmt::print(out_,
               "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" fill=\"none\" {3}/>\n"
               "<text x=\"{4}\" y=\"{5}\">{6}</text>\n",
               lx, y, lx + 28, look, lx + 34, y + 4, text);
  }

 private:
  static constexpr double width = 900, left = 70, right = 880, first_top = 60, panel_gap = 40;

  double x_at(double s) const { return left + (right - left) * s / seconds_; }
  double y_at(double v) const {
    return top_ + panel_height_ - panel_height_ * std::min(v, y_max_) / y_max_;
  }

  std::FILE* out_;
  double seconds_;
  std::size_t panels_;
  double panel_height_;
  double height_;
  double top_ = first_top;
  double y_max_ = 1;
};

}  // namespace keel_examples

#endif  // KEEL_EXAMPLES_SUPPORT_PANEL_CHART_HPP_INCLUDED
