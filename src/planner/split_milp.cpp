// The layer-split MILP (cluster_planner.h) and the hand-split parser.
#include <glpk.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>

#include "core/error.h"
#include "planner/cluster_planner.h"

namespace strata {
namespace {

constexpr int kTimeLimitMs = 2000;   // per solve; the incumbent is already the optimum (below)
constexpr double kHoldShare = 1e-9;  // the second solve keeps Tp + Td within this of the optimum

struct ProblemDeleter {
  void operator()(glp_prob* p) const { glp_delete_prob(p); }
};

// One way a rank can run: candidate k with n layers, and the stage seconds that gives.
struct Pattern {
  int k;
  int64_t n;
  double prefill_s, decode_s;
  double stage_s() const { return prefill_s + decode_s; }
};

// Ranks with identical candidates (and, for a hand split, the same count) are interchangeable:
// the MILP counts how many of them run each pattern instead of choosing per rank, so it has no
// symmetric copies of one answer to search through.
struct Group {
  std::vector<size_t> ranks;
  std::vector<Pattern> patterns;  // none dominated by another of the same n
};

bool same(const StageCandidate& a, const StageCandidate& b) {
  return a.prefill_per_layer_s == b.prefill_per_layer_s &&
         a.decode_per_layer_s == b.decode_per_layer_s && a.prefill_extra_s == b.prefill_extra_s &&
         a.decode_extra_s == b.decode_extra_s && a.max_layers == b.max_layers;
}

std::vector<Group> group_ranks(const std::vector<std::vector<StageCandidate>>& cands,
                               int64_t n_layers, const std::vector<int64_t>& fixed) {
  const int64_t most = n_layers - static_cast<int64_t>(cands.size()) + 1;
  std::vector<Group> groups;
  for (size_t r = 0; r < cands.size(); ++r) {
    bool placed = false;
    for (Group& g : groups) {
      const size_t q = g.ranks.front();
      const auto& a = cands[q];
      const auto& b = cands[r];
      bool equal = a.size() == b.size() && (fixed.empty() || fixed[q] == fixed[r]);
      for (size_t k = 0; equal && k < a.size(); ++k) equal = same(a[k], b[k]);
      if (equal) {
        g.ranks.push_back(r);
        placed = true;
        break;
      }
    }
    if (placed) continue;
    Group g{{r}, {}};
    const int64_t lo = fixed.empty() ? 1 : fixed[r];
    for (int64_t n = lo; n <= (fixed.empty() ? most : lo); ++n) {
      std::vector<Pattern> at_n;
      for (size_t k = 0; k < cands[r].size(); ++k) {
        const StageCandidate& c = cands[r][k];
        if (c.max_layers < n) continue;
        const double x = static_cast<double>(n);
        at_n.push_back({static_cast<int>(k), n, x * c.prefill_per_layer_s + c.prefill_extra_s,
                        x * c.decode_per_layer_s + c.decode_extra_s});
      }
      for (size_t i = 0; i < at_n.size(); ++i) {
        bool dominated = false;
        for (size_t j = 0; j < at_n.size() && !dominated; ++j) {
          const bool no_worse =
              at_n[j].prefill_s <= at_n[i].prefill_s && at_n[j].decode_s <= at_n[i].decode_s;
          dominated = j != i && no_worse &&
                      (j < i || at_n[j].prefill_s < at_n[i].prefill_s ||
                       at_n[j].decode_s < at_n[i].decode_s);
        }
        if (!dominated) g.patterns.push_back(at_n[i]);
      }
    }
    groups.push_back(std::move(g));
  }
  return groups;
}

// Per group, the patterns chosen: one entry per rank.
using Assignment = std::vector<std::vector<Pattern>>;

// The exact optimum of the first objective by search over thresholds: (Tp, Td) is feasible when
// every rank has a pattern within both and the most layers each can take within them add up to
// n_layers (a rank can always take fewer: the same policy with fewer layers is faster, and a
// pattern pruned as dominated has one at least as fast). Tp runs up the prefill times while Td
// only ever falls, so each threshold is tried about once. Seeds and bounds the MILP.
std::optional<Assignment> threshold_search(const std::vector<Group>& groups, int64_t n_layers,
                                           bool fixed) {
  std::vector<double> tps, tds;
  for (const Group& g : groups) {
    for (const Pattern& p : g.patterns) tps.push_back(p.prefill_s), tds.push_back(p.decode_s);
  }
  for (auto* v : {&tps, &tds}) {
    std::sort(v->begin(), v->end());
    v->erase(std::unique(v->begin(), v->end()), v->end());
  }
  // Most layers per rank of each group within (tp, td), or -1 when some group has no pattern.
  auto capacity = [&](double tp, double td, std::vector<int64_t>* best) {
    int64_t total = 0;
    for (size_t i = 0; i < groups.size(); ++i) {
      int64_t most = 0;
      for (const Pattern& p : groups[i].patterns) {
        if (p.prefill_s <= tp && p.decode_s <= td) most = std::max(most, p.n);
      }
      if (most == 0) return int64_t{-1};
      if (best) (*best)[i] = most;
      total += most * static_cast<int64_t>(groups[i].ranks.size());
    }
    return total;
  };
  auto feasible = [&](double tp, double td) {
    const int64_t c = capacity(tp, td, nullptr);
    return fixed ? c >= 0 : c >= n_layers;
  };
  if (tps.empty() || !feasible(tps.back(), tds.back())) return std::nullopt;
  double best_tp = 0, best_td = 0, best = std::numeric_limits<double>::infinity();
  size_t j = tds.size();  // tds[j - 1] is the least Td feasible with the current Tp
  for (double tp : tps) {
    if (!feasible(tp, tds.back())) continue;
    while (j > 1 && feasible(tp, tds[j - 2])) --j;
    if (tp + tds[j - 1] < best) best = tp + tds[j - 1], best_tp = tp, best_td = tds[j - 1];
  }
  std::vector<int64_t> most(groups.size());
  capacity(best_tp, best_td, &most);
  // Every rank at its most, then the excess taken off the largest.
  std::vector<std::vector<int64_t>> layers(groups.size());
  int64_t excess = -n_layers;
  for (size_t i = 0; i < groups.size(); ++i) {
    layers[i].assign(groups[i].ranks.size(), most[i]);
    excess += most[i] * static_cast<int64_t>(groups[i].ranks.size());
  }
  while (excess > 0) {
    size_t gi = 0, ri = 0;
    int64_t top = 0;
    for (size_t i = 0; i < layers.size(); ++i) {
      for (size_t r = 0; r < layers[i].size(); ++r) {
        if (layers[i][r] > top) top = layers[i][r], gi = i, ri = r;
      }
    }
    STRATA_CHECK(top > 1, "threshold search: cannot shed layers");
    --layers[gi][ri];
    --excess;
  }
  Assignment out(groups.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    for (int64_t n : layers[i]) {
      const Pattern* pick = nullptr;
      for (const Pattern& p : groups[i].patterns) {
        if (p.n == n && p.prefill_s <= best_tp && p.decode_s <= best_td &&
            (!pick || p.stage_s() < pick->stage_s())) {
          pick = &p;
        }
      }
      STRATA_CHECK(pick, "threshold search: no pattern with ", n, " layers");
      out[i].push_back(*pick);
    }
  }
  return out;
}

// The MILP over patterns. Columns per (group, pattern): z = how many of the group's ranks run
// it, w = whether any does (z itself for a group of one). Rows: each group's ranks all run
// something, the layers add up, and a pattern in use bounds Tp and Td from below.
class PatternMilp {
 public:
  PatternMilp(const std::vector<Group>& groups, int64_t n_layers) : groups_(groups) {
    glp_set_obj_dir(lp_.get(), GLP_MIN);
    tp_ = add_col(GLP_CV, 0, 0);
    td_ = add_col(GLP_CV, 0, 0);
    std::vector<std::pair<int, double>> layers_row;
    for (const Group& g : groups) {
      const double size = static_cast<double>(g.ranks.size());
      std::vector<std::pair<int, double>> ranks_row;
      cols_.emplace_back();
      for (const Pattern& p : g.patterns) {
        const int z = size == 1 ? add_col(GLP_BV, 0, 1) : add_col(GLP_IV, 0, size);
        const int w = size == 1 ? z : add_col(GLP_BV, 0, 1);
        cols_.back().push_back({z, w});
        ranks_row.push_back({z, 1.0});
        layers_row.push_back({z, static_cast<double>(p.n)});
        if (w != z) add_row({{z, 1.0}, {w, -size}}, GLP_UP, 0, 0);
        add_row({{tp_, 1.0}, {w, -p.prefill_s}}, GLP_LO, 0, 0);
        add_row({{td_, 1.0}, {w, -p.decode_s}}, GLP_LO, 0, 0);
      }
      add_row(ranks_row, GLP_FX, size, size);
    }
    const double n = static_cast<double>(n_layers);
    add_row(layers_row, GLP_FX, n, n);
    glp_set_obj_coef(lp_.get(), tp_, 1);
    glp_set_obj_coef(lp_.get(), td_, 1);
  }

  // Second objective with Tp + Td held at `hold`: least total stage time (no needlessly slow
  // policy on a rank with slack), then the least-loaded stage lifted (an even split among equal
  // nodes). A layer's time counts fully in the sum and at most half in the lift, so the lift
  // never pays for a slower policy.
  void hold_bottleneck(double hold, double big) {
    glp_set_obj_coef(lp_.get(), tp_, 0);
    glp_set_obj_coef(lp_.get(), td_, 0);
    const int tmin = add_col(GLP_CV, 0, 0);
    glp_set_obj_coef(lp_.get(), tmin, -0.5);
    for (size_t i = 0; i < groups_.size(); ++i) {
      for (size_t p = 0; p < groups_[i].patterns.size(); ++p) {
        const auto [z, w] = cols_[i][p];
        const double s = groups_[i].patterns[p].stage_s();
        glp_set_obj_coef(lp_.get(), z, s);
        add_row({{tmin, 1.0}, {w, big}}, GLP_UP, 0, s + big);  // Tmin <= s where used
      }
    }
    add_row({{tp_, 1.0}, {td_, 1.0}}, GLP_UP, 0, hold);
    tmin_ = tmin;
  }

  // Solves, from `seed` (a feasible assignment) when given: the answer is then never worse than
  // it. None when there is no answer (or GLPK gave none in time).
  std::optional<Assignment> solve(const Assignment* seed) {
    glp_load_matrix(lp_.get(), static_cast<int>(ar_.size()) - 1, ia_.data(), ja_.data(),
                    ar_.data());
    seed_.assign(static_cast<size_t>(glp_get_num_cols(lp_.get())) + 1, 0.0);
    double tp = 0, td = 0, tmin = std::numeric_limits<double>::infinity();
    for (size_t i = 0; seed && i < groups_.size(); ++i) {
      for (const Pattern& chosen : (*seed)[i]) {
        for (size_t p = 0; p < groups_[i].patterns.size(); ++p) {
          const Pattern& q = groups_[i].patterns[p];
          if (q.k != chosen.k || q.n != chosen.n) continue;
          seed_[static_cast<size_t>(cols_[i][p].first)] += 1;
          seed_[static_cast<size_t>(cols_[i][p].second)] = 1;
        }
        tp = std::max(tp, chosen.prefill_s);
        td = std::max(td, chosen.decode_s);
        tmin = std::min(tmin, chosen.stage_s());
      }
    }
    seed_[static_cast<size_t>(tp_)] = tp;
    seed_[static_cast<size_t>(td_)] = td;
    if (tmin_ && seed) seed_[static_cast<size_t>(tmin_)] = tmin;
    // The relaxation first, without the MIP presolver, so the callback's columns are ours.
    glp_smcp lp_parm;
    glp_init_smcp(&lp_parm);
    lp_parm.msg_lev = GLP_MSG_OFF;
    if (glp_simplex(lp_.get(), &lp_parm) != 0 || glp_get_status(lp_.get()) != GLP_OPT) {
      return seed ? std::optional<Assignment>(*seed) : std::nullopt;
    }
    glp_iocp parm;
    glp_init_iocp(&parm);
    parm.msg_lev = GLP_MSG_OFF;
    parm.tm_lim = kTimeLimitMs;
    parm.cb_func = [](glp_tree* tree, void* info) {
      auto* self = static_cast<PatternMilp*>(info);
      if (glp_ios_reason(tree) == GLP_IHEUR && !self->seeded_) {
        self->seeded_ = true;
        glp_ios_heur_sol(tree, self->seed_.data());
      }
    };
    parm.cb_info = this;
    seeded_ = seed == nullptr;
    const int rc = glp_intopt(lp_.get(), &parm);
    const int status = glp_mip_status(lp_.get());
    if ((rc != 0 && rc != GLP_ETMLIM) || (status != GLP_OPT && status != GLP_FEAS)) {
      return seed ? std::optional<Assignment>(*seed) : std::nullopt;
    }
    Assignment out(groups_.size());
    for (size_t i = 0; i < groups_.size(); ++i) {
      for (size_t p = 0; p < groups_[i].patterns.size(); ++p) {
        const auto count = std::llround(glp_mip_col_val(lp_.get(), cols_[i][p].first));
        for (long long c = 0; c < count; ++c) out[i].push_back(groups_[i].patterns[p]);
      }
      if (out[i].size() != groups_[i].ranks.size()) {  // round-off: keep the seed
        return seed ? std::optional<Assignment>(*seed) : std::nullopt;
      }
    }
    return out;
  }

 private:
  int add_col(int kind, double lower, double upper) {
    const int col = glp_add_cols(lp_.get(), 1);
    glp_set_col_kind(lp_.get(), col, kind);
    if (kind != GLP_BV)
      glp_set_col_bnds(lp_.get(), col, kind == GLP_CV ? GLP_LO : GLP_DB, lower, upper);
    return col;
  }
  void add_row(const std::vector<std::pair<int, double>>& entries, int type, double lower,
               double upper) {
    const int row = glp_add_rows(lp_.get(), 1);
    glp_set_row_bnds(lp_.get(), row, type, lower, upper);
    for (const auto& [col, value] : entries) {
      ia_.push_back(row);
      ja_.push_back(col);
      ar_.push_back(value);
    }
  }

  const std::vector<Group>& groups_;
  std::unique_ptr<glp_prob, ProblemDeleter> lp_{glp_create_prob()};
  std::vector<std::vector<std::pair<int, int>>> cols_;  // (z, w) per group and pattern
  int tp_ = 0, td_ = 0, tmin_ = 0;
  std::vector<int> ia_{0}, ja_{0};
  std::vector<double> ar_{0};
  std::vector<double> seed_;
  bool seeded_ = false;
};

SplitSolution to_solution(const std::vector<Group>& groups, const Assignment& a, size_t n_ranks,
                          int64_t n_layers) {
  SplitSolution s;
  s.layers.assign(n_ranks, 0);
  s.choice.assign(n_ranks, -1);
  for (size_t i = 0; i < groups.size(); ++i) {
    std::vector<Pattern> chosen = a[i];
    // Interchangeable ranks: the larger slices first, so a printed split reads evenly.
    std::stable_sort(chosen.begin(), chosen.end(),
                     [](const Pattern& x, const Pattern& y) { return x.n > y.n; });
    for (size_t j = 0; j < groups[i].ranks.size(); ++j) {
      s.layers[groups[i].ranks[j]] = chosen[j].n;
      s.choice[groups[i].ranks[j]] = chosen[j].k;
      s.prefill_s = std::max(s.prefill_s, chosen[j].prefill_s);
      s.decode_s = std::max(s.decode_s, chosen[j].decode_s);
    }
  }
  int64_t total = 0;
  for (int64_t n : s.layers) total += n;
  STRATA_CHECK(total == n_layers, "split MILP: ", total, " layers placed of ", n_layers);
  return s;
}

}  // namespace

std::vector<int64_t> parse_layer_split(const std::string& text, int64_t n_layers, int64_t n_ranks) {
  std::vector<int64_t> split;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t pos = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    STRATA_INPUT_CHECK(pos > 0 && pos == item.size() && v >= 0, "--layers-per-rank '", text, "': '",
                       item, "' is not a whole number");
    STRATA_INPUT_CHECK(v >= 1, "--layers-per-rank '", text,
                       "': every rank needs at least one layer (rank ", split.size(), " has 0)");
    split.push_back(v);
  }
  STRATA_INPUT_CHECK(!text.empty() && text.back() != ',', "--layers-per-rank '", text,
                     "': give one layer count per rank, e.g. 10,14");
  STRATA_INPUT_CHECK(static_cast<int64_t>(split.size()) == n_ranks, "--layers-per-rank '", text,
                     "' has ", split.size(), " counts for ", n_ranks, " ranks");
  int64_t sum = 0;
  for (int64_t v : split) sum += v;
  STRATA_INPUT_CHECK(sum == n_layers, "--layers-per-rank '", text, "' sums to ", sum,
                     " but the model has ", n_layers, " layers");
  return split;
}

std::optional<SplitSolution> solve_split(const std::vector<std::vector<StageCandidate>>& cands,
                                         int64_t n_layers, const std::vector<int64_t>& fixed,
                                         SplitSolver solver) {
  const int64_t n_ranks = static_cast<int64_t>(cands.size());
  STRATA_CHECK(n_ranks >= 1 && n_layers >= n_ranks, "split MILP: ", n_ranks, " ranks for ",
               n_layers, " layers");
  STRATA_CHECK(fixed.empty() || static_cast<int64_t>(fixed.size()) == n_ranks,
               "split MILP: hand split of the wrong length");
  std::vector<Group> groups = group_ranks(cands, n_layers, fixed);
  std::optional<Assignment> seed;
  if (solver != SplitSolver::kMilpOnly) {
    seed = threshold_search(groups, n_layers, !fixed.empty());
    if (!seed) return std::nullopt;
    if (solver == SplitSolver::kSearchOnly)
      return to_solution(groups, *seed, cands.size(), n_layers);
    // A pattern slower than the optimum's Tp + Td can never be in use: drop it before the MILP.
    const SplitSolution bound = to_solution(groups, *seed, cands.size(), n_layers);
    const double best = (bound.prefill_s + bound.decode_s) * (1 + 1e-12);
    for (Group& g : groups) {
      std::erase_if(g.patterns, [&](const Pattern& p) { return p.stage_s() > best; });
    }
  }
  double big = 0;
  for (const Group& g : groups) {
    for (const Pattern& p : g.patterns) big = std::max(big, p.stage_s());
  }
  PatternMilp first(groups, n_layers);
  const auto a = first.solve(seed ? &*seed : nullptr);
  if (!a) return std::nullopt;
  SplitSolution s = to_solution(groups, *a, cands.size(), n_layers);
  PatternMilp second(groups, n_layers);
  second.hold_bottleneck((s.prefill_s + s.decode_s) * (1 + kHoldShare), big);
  if (const auto tidy = second.solve(&*a)) {
    const SplitSolution t = to_solution(groups, *tidy, cands.size(), n_layers);
    if (t.prefill_s + t.decode_s <= (s.prefill_s + s.decode_s) * (1 + kHoldShare)) s = t;
  }
  s.milp_count = 2;
  return s;
}

}  // namespace strata
