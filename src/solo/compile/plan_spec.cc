#include "solo/compile/plan_spec.h"

#include <sstream>

#include "solo/core/error.h"

namespace solo::compile {

namespace {
int parse_count(const std::string& source, const std::string& key, const std::string& value, int lo,
                int hi) {
  size_t used = 0;
  int n = 0;
  try {
    n = std::stoi(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  SOLO_CHECK(used == value.size() && !value.empty() && n >= lo && n <= hi, source, ": ", key, "=",
             value, " is not a whole number from ", lo, " to ", hi);
  return n;
}
}  // namespace

PlanSpec parse_plan_spec(const std::string& text, const std::string& source) {
  PlanSpec p;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    SOLO_CHECK(eq != std::string::npos, source, ": '", item,
               "' is not key=value (e.g. dp=4,zero=1,recompute=block)");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "dp") {
      p.dp = parse_count(source, key, value, 1, 1 << 20);
    } else if (key == "tp") {
      p.tp = parse_count(source, key, value, 1, 1 << 20);
    } else if (key == "pp") {
      p.pp = parse_count(source, key, value, 1, 1 << 20);
    } else if (key == "zero") {
      p.zero = parse_count(source, key, value, 0, 3);
    } else if (key == "micro") {
      p.micro_batches = parse_count(source, key, value, 1, 1 << 20);
    } else if (key == "low_prec") {
      p.low_prec = parse_count(source, key, value, 0, 1) == 1;
    } else if (key == "recompute") {
      SOLO_CHECK(value == "none" || value == "block", source, ": recompute=", value,
                 " is not one of none, block");
      p.recompute = value == "block";
    } else {
      SOLO_FAIL(source, ": unknown key '", key,
                "'; the keys are dp, tp, pp, micro, zero, recompute, low_prec");
    }
  }
  return p;
}

std::string PlanSpec::str() const {
  std::ostringstream os;
  os << "DP=" << dp << ", "
     << (pp > 1 ? "PP=" + std::to_string(pp) + " (" + std::to_string(micro_batches) +
                      (micro_batches == 1 ? " micro-batch)" : " micro-batches)")
                : "No PP")
     << ", " << (tp > 1 ? "TP=" + std::to_string(tp) : "No TP")
     << ", recomputation: " << (recompute ? "block" : "none") << ", zero: " << zero
     << ", distribute_param: " << (zero >= 3 ? "true" : "false")
     << ", distribute_low_prec_param: " << (low_prec ? "true" : "false");
  return os.str();
}

std::string PlanSpec::spec() const {
  return "dp=" + std::to_string(dp) + ",tp=" + std::to_string(tp) + ",pp=" + std::to_string(pp) +
         ",micro=" + std::to_string(micro_batches) + ",zero=" + std::to_string(zero) +
         ",recompute=" + (recompute ? "block" : "none") + ",low_prec=" + (low_prec ? "1" : "0");
}

std::string not_runnable_reason(const PlanSpec& plan) {
  if (plan.micro_batches > 1) return "micro-batches are not executable yet";
  return "";
}

void check_runnable(const PlanSpec& plan, int devices) {
  SOLO_CHECK(plan.devices() == devices, "plan ", plan.str(), " uses ", plan.devices(),
             " devices but the flavor has ", devices, "; set dp x tp x pp to ", devices,
             " or switch flavor (solo switch)");
  const std::string why = not_runnable_reason(plan);
  SOLO_CHECK(why.empty(), "plan ", plan.str(), ": ", why, "; use micro=1");
  SOLO_CHECK(!plan.low_prec || plan.zero == 3, "plan ", plan.str(),
             ": low_prec shards the low-precision copies of sharded parameters, which only "
             "zero=3 has; set zero=3 or low_prec=0");
}

}  // namespace solo::compile
