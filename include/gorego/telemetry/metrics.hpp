#pragma once
/// Metrics plumbing over prometheus-cpp, on registries we own (no global state):
/// `CallbackCollector` for values read at scrape time (disk use, process CPU), and
/// `MetricsSource` to gather several collectables into one text exposition.
///
///   auto gauges = std::make_shared<CallbackCollector>();
///   gauges->gauge("gorego_disk_usage_bytes", "Bytes on disk", [&] { return used(); });
///   MetricsSource src;
///   src.add(registry);
///   src.add(gauges);
///   std::string text = src.render();

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

namespace gorego::telemetry {

/// Families whose values are computed by callbacks when scraped. Thread-safe.
class CallbackCollector final : public prometheus::Collectable {
 public:
  using Labels = std::vector<prometheus::ClientMetric::Label>;
  /// One series of a family: its labels and how to read its value.
  struct Series {
    Labels labels;
    std::function<double()> value;
  };

  void gauge(std::string name, std::string help, std::function<double()> f) {
    add(std::move(name), std::move(help), prometheus::MetricType::Gauge, {{{}, std::move(f)}});
  }
  void counter(std::string name, std::string help, std::function<double()> f) {
    add(std::move(name), std::move(help), prometheus::MetricType::Counter, {{{}, std::move(f)}});
  }
  void add(std::string name, std::string help, prometheus::MetricType type, std::vector<Series> series) {
    std::lock_guard lock(mu_);
    families_.push_back({std::move(name), std::move(help), type, std::move(series)});
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::lock_guard lock(mu_);
    std::vector<prometheus::MetricFamily> out;
    out.reserve(families_.size());
    for (const Family& f : families_) {
      prometheus::MetricFamily mf{f.name, f.help, f.type, {}};
      for (const Series& s : f.series) {
        prometheus::ClientMetric m;
        m.label = s.labels;
        const double v = s.value();
        if (f.type == prometheus::MetricType::Counter) m.counter.value = v;
        else m.gauge.value = v;
        mf.metric.push_back(std::move(m));
      }
      out.push_back(std::move(mf));
    }
    return out;
  }

 private:
  struct Family {
    std::string name;
    std::string help;
    prometheus::MetricType type;
    std::vector<Series> series;
  };
  mutable std::mutex mu_;
  std::vector<Family> families_;
};

/// Everything one /metrics endpoint shows. Thread-safe.
class MetricsSource {
 public:
  void add(std::shared_ptr<prometheus::Collectable> c) {
    std::lock_guard lock(mu_);
    sources_.push_back(std::move(c));
  }
  [[nodiscard]] std::string render() const {
    std::vector<prometheus::MetricFamily> all;
    {
      std::lock_guard lock(mu_);
      for (const auto& c : sources_) {
        auto part = c->Collect();
        all.insert(all.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
      }
    }
    return prometheus::TextSerializer().Serialize(all);
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<prometheus::Collectable>> sources_;
};

}  // namespace gorego::telemetry
