// The layer-split MILP (cluster_planner.h) and the hand-split parser.
#include <glpk.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <sstream>

#include "core/error.h"
#include "planner/cluster_planner.h"

namespace strata {
namespace {

constexpr int kTimeLimitMs = 60000;  // a safety net: the cases strata plans solve in well under
constexpr double kHoldShare = 1e-6;  // the second solve keeps Tp + Td within this of the optimum

struct ProblemDeleter {
  void operator()(glp_prob* p) const { glp_delete_prob(p); }
};

// Columns of one (rank, candidate) pair.
struct PairCols {
  int rank, k, y, n;
};

struct Model {
  std::unique_ptr<glp_prob, ProblemDeleter> lp{glp_create_prob()};
  std::vector<PairCols> pairs;
  int tp = 0, td = 0;
  std::vector<int> ia{0}, ja{0};
  std::vector<double> ar{0};

  int add_col(int kind, int type, double lower, double upper) {
    const int col = glp_add_cols(lp.get(), 1);
    glp_set_col_kind(lp.get(), col, kind);
    if (kind != GLP_BV) glp_set_col_bnds(lp.get(), col, type, lower, upper);
    return col;
  }
  void add_row(const std::vector<std::pair<int, double>>& entries, int type, double lower,
               double upper) {
    const int row = glp_add_rows(lp.get(), 1);
    glp_set_row_bnds(lp.get(), row, type, lower, upper);
    for (const auto& [col, value] : entries) {
      ia.push_back(row);
      ja.push_back(col);
      ar.push_back(value);
    }
  }
  void load() {
    glp_load_matrix(lp.get(), static_cast<int>(ar.size()) - 1, ia.data(), ja.data(), ar.data());
  }
};

bool solve(glp_prob* lp) {
  glp_iocp parm;
  glp_init_iocp(&parm);
  parm.msg_lev = GLP_MSG_OFF;
  parm.presolve = GLP_ON;  // reports infeasibility instead of failing on it
  parm.tm_lim = kTimeLimitMs;
  const int rc = glp_intopt(lp, &parm);
  const int status = glp_mip_status(lp);
  return (rc == 0 || rc == GLP_ETMLIM) && (status == GLP_OPT || status == GLP_FEAS);
}

// Reads the split from a solved model and recomputes the bottleneck from the candidates, so the
// result does not carry the solver's round-off.
std::optional<SplitSolution> read_solution(const Model& m,
                                           const std::vector<std::vector<StageCandidate>>& cands,
                                           int64_t n_layers) {
  const size_t n_ranks = cands.size();
  SplitSolution s;
  s.layers.assign(n_ranks, 0);
  s.choice.assign(n_ranks, -1);
  for (const PairCols& p : m.pairs) {
    if (glp_mip_col_val(m.lp.get(), p.y) < 0.5) continue;
    s.choice[static_cast<size_t>(p.rank)] = p.k;
    s.layers[static_cast<size_t>(p.rank)] = std::llround(glp_mip_col_val(m.lp.get(), p.n));
  }
  int64_t total = 0;
  for (size_t r = 0; r < n_ranks; ++r) {
    STRATA_CHECK(s.choice[r] >= 0 && s.layers[r] >= 1, "split MILP: rank ", r, " has no layers");
    const StageCandidate& c = cands[r][static_cast<size_t>(s.choice[r])];
    STRATA_CHECK(s.layers[r] <= c.max_layers, "split MILP: rank ", r, " over its memory");
    total += s.layers[r];
    const double n = static_cast<double>(s.layers[r]);
    s.prefill_s = std::max(s.prefill_s, n * c.prefill_per_layer_s + c.prefill_extra_s);
    s.decode_s = std::max(s.decode_s, n * c.decode_per_layer_s + c.decode_extra_s);
  }
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
                                         int64_t n_layers, const std::vector<int64_t>& fixed) {
  const int64_t n_ranks = static_cast<int64_t>(cands.size());
  STRATA_CHECK(n_ranks >= 1 && n_layers >= n_ranks, "split MILP: ", n_ranks, " ranks for ",
               n_layers, " layers");
  STRATA_CHECK(fixed.empty() || static_cast<int64_t>(fixed.size()) == n_ranks,
               "split MILP: hand split of the wrong length");
  // Times in units of the slowest per-layer candidate keep GLPK's absolute tolerances sensible.
  double unit = 0;
  for (const auto& rank : cands) {
    for (const StageCandidate& c : rank) {
      unit = std::max({unit, c.prefill_per_layer_s + c.decode_per_layer_s,
                       c.prefill_extra_s + c.decode_extra_s});
    }
  }
  if (unit <= 0) unit = 1;

  Model m;
  glp_set_obj_dir(m.lp.get(), GLP_MIN);
  m.tp = m.add_col(GLP_CV, GLP_LO, 0, 0);
  m.td = m.add_col(GLP_CV, GLP_LO, 0, 0);
  glp_set_obj_coef(m.lp.get(), m.tp, 1);
  glp_set_obj_coef(m.lp.get(), m.td, 1);
  const int64_t most = n_layers - (n_ranks - 1);  // the others hold one each at least
  std::vector<std::pair<int, double>> all_n, prefill_row, decode_row;
  for (int64_t r = 0; r < n_ranks; ++r) {
    std::vector<std::pair<int, double>> one_choice, rank_n;
    prefill_row = {{m.tp, 1.0}};
    decode_row = {{m.td, 1.0}};
    const int64_t need = fixed.empty() ? 1 : fixed[static_cast<size_t>(r)];
    for (size_t k = 0; k < cands[static_cast<size_t>(r)].size(); ++k) {
      const StageCandidate& c = cands[static_cast<size_t>(r)][k];
      const int64_t upper = fixed.empty() ? std::min(c.max_layers, most) : need;
      if (c.max_layers < need) continue;  // cannot hold even the least this rank must
      const PairCols p{static_cast<int>(r), static_cast<int>(k), m.add_col(GLP_BV, GLP_DB, 0, 1),
                       m.add_col(GLP_IV, GLP_DB, 0, static_cast<double>(upper))};
      m.pairs.push_back(p);
      one_choice.push_back({p.y, 1.0});
      rank_n.push_back({p.n, 1.0});
      all_n.push_back({p.n, 1.0});
      // y <= n <= upper * y: a chosen policy runs at least one layer and at most what fits.
      m.add_row({{p.n, 1.0}, {p.y, -static_cast<double>(upper)}}, GLP_UP, 0, 0);
      m.add_row({{p.n, 1.0}, {p.y, -1.0}}, GLP_LO, 0, 0);
      prefill_row.push_back({p.n, -c.prefill_per_layer_s / unit});
      prefill_row.push_back({p.y, -c.prefill_extra_s / unit});
      decode_row.push_back({p.n, -c.decode_per_layer_s / unit});
      decode_row.push_back({p.y, -c.decode_extra_s / unit});
    }
    if (one_choice.empty()) return std::nullopt;  // no policy of this rank fits
    m.add_row(one_choice, GLP_FX, 1, 1);
    if (!fixed.empty()) {
      m.add_row(rank_n, GLP_FX, static_cast<double>(need), static_cast<double>(need));
    }
    m.add_row(prefill_row, GLP_LO, 0, 0);
    m.add_row(decode_row, GLP_LO, 0, 0);
  }
  m.add_row(all_n, GLP_FX, static_cast<double>(n_layers), static_cast<double>(n_layers));
  m.load();
  if (!solve(m.lp.get())) return std::nullopt;
  auto first = read_solution(m, cands, n_layers);
  first->milp_count = 1;

  // Second solve: hold the bottleneck, then spend as little total stage time as possible (no
  // needlessly slow policy on a rank with slack) and lift the least-loaded stage (an even split
  // among equal nodes). Each layer's time counts fully in the sum and at most once in the lift,
  // so the lift never pays for a slower policy.
  const double hold = (first->prefill_s + first->decode_s) / unit * (1 + kHoldShare) + 1e-9;
  const int tmin = m.add_col(GLP_CV, GLP_LO, 0, 0);
  glp_set_obj_coef(m.lp.get(), m.tp, 0);
  glp_set_obj_coef(m.lp.get(), m.td, 0);
  glp_set_obj_coef(m.lp.get(), tmin, -0.5);
  std::vector<std::vector<std::pair<int, double>>> lift(static_cast<size_t>(n_ranks));
  for (auto& row : lift) row.push_back({tmin, 1.0});
  for (const PairCols& p : m.pairs) {
    const StageCandidate& c = cands[static_cast<size_t>(p.rank)][static_cast<size_t>(p.k)];
    const double per_layer = (c.prefill_per_layer_s + c.decode_per_layer_s) / unit;
    const double extra = (c.prefill_extra_s + c.decode_extra_s) / unit;
    glp_set_obj_coef(m.lp.get(), p.n, per_layer);
    glp_set_obj_coef(m.lp.get(), p.y, extra);
    lift[static_cast<size_t>(p.rank)].push_back({p.n, -per_layer});
    lift[static_cast<size_t>(p.rank)].push_back({p.y, -extra});
  }
  for (const auto& row : lift) m.add_row(row, GLP_UP, 0, 0);
  m.add_row({{m.tp, 1.0}, {m.td, 1.0}}, GLP_UP, 0, hold);
  m.load();
  if (!solve(m.lp.get())) return first;
  auto second = read_solution(m, cands, n_layers);
  // Round-off can only let the held bottleneck creep; keep the first answer if it did.
  if (second->prefill_s + second->decode_s > (first->prefill_s + first->decode_s) * (1 + 1e-9)) {
    return first;
  }
  second->milp_count = 2;
  return second;
}

}  // namespace strata
