"""SQL views: the warehouse's answers to the questions asked of every run.

Each view is plain DuckDB SQL over the tables of the latest schema, created
(or replaced) by `migrate` whenever a writer opens the file. Views hold no
rows, so replacing them is free and they always match this code; a snapshot
copies them along with the tables, so readers of a running warehouse see them.

| view | question |
|---|---|
| `labelled_tasks` | every valid task with its label, p̂ and band, per Solver checkpoint |
| `frontier_tasks` | what is the frontier (this iteration)? |
| `difficulty_by_iteration` | how did difficulty move across iterations? |
| `label_checks`, `label_quality` | how good are our pseudo-labels, where a check exists? |
| `challenger_reward_parts`, `..._by_iteration` | what is the Challenger rewarded for? |
| `document_yield` | which documents yield the best tasks? |
| `sandbox_events_by_kind` | how often did generated code hit the sandbox? |

docs/warehouse.md lists their columns with an example query each.
"""

from __future__ import annotations

import duckdb

# name -> SELECT. Order matters: a view may read only the views above it.
VIEWS: dict[str, str] = {}

# One row per (valid task, Solver checkpoint that labelled it). `is_latest`
# marks the newest label of each task, which is what exports train on.
# The Solver prompt is read from the trajectories of that checkpoint, the
# exact messages the Solver saw.
VIEWS["labelled_tasks"] = """
WITH solver_prompts AS (
    SELECT task_id, checkpoint,
           arg_min(prompt_json, sample_index) AS solver_prompt_json,
           count(*) AS n_trajectories
    FROM trajectories
    WHERE role = 'solver'
    GROUP BY task_id, checkpoint
)
SELECT
    t.task_id, t.run_id, t.iteration, t.slot, t.kind, t.doc_id, t.grounded,
    t.question, t.reference_answer, t.options_json, t.payload_json,
    l.iteration AS labelled_iteration, l.solver_checkpoint, l.label_source, l.label,
    l.majority_share, l.n_samples, l.n_answered, l.n_clusters, l.agrees_with_reference,
    d.pass_rate, d.band, d.band_low, d.band_high,
    p.solver_prompt_json, coalesce(p.n_trajectories, 0) AS n_trajectories,
    l.created_at AS labelled_at,
    row_number() OVER (
        PARTITION BY t.task_id ORDER BY l.created_at DESC, l.solver_checkpoint DESC
    ) = 1 AS is_latest
FROM tasks AS t
JOIN labels AS l ON l.task_id = t.task_id
JOIN difficulty AS d
    ON d.task_id = l.task_id AND d.solver_checkpoint = l.solver_checkpoint
LEFT JOIN solver_prompts AS p
    ON p.task_id = l.task_id AND p.checkpoint = l.solver_checkpoint
WHERE t.parse_status = 'valid'
"""

VIEWS["frontier_tasks"] = """
SELECT task_id, run_id, iteration, kind, doc_id, question, label, label_source,
       majority_share, pass_rate, band_low, band_high, agrees_with_reference,
       solver_checkpoint, reference_answer
FROM labelled_tasks
WHERE is_latest AND band = 'frontier'
"""

# Per run and iteration (and checkpoint): counts per band, p̂ quantiles, the
# pass-rate histogram, and the change in mean p̂ since the previous iteration.
VIEWS["difficulty_by_iteration"] = """
WITH per_iteration AS (
    SELECT
        run_id, iteration, solver_checkpoint,
        count(*) AS n_tasks,
        count(*) FILTER (WHERE band = 'too_easy') AS n_too_easy,
        count(*) FILTER (WHERE band = 'frontier') AS n_frontier,
        count(*) FILTER (WHERE band = 'too_hard') AS n_too_hard,
        avg(pass_rate) AS mean_pass_rate,
        quantile_cont(pass_rate, 0.25) AS p25_pass_rate,
        quantile_cont(pass_rate, 0.5) AS median_pass_rate,
        quantile_cont(pass_rate, 0.75) AS p75_pass_rate,
        histogram(round(pass_rate, 2)) AS pass_rate_histogram
    FROM difficulty
    GROUP BY run_id, iteration, solver_checkpoint
)
SELECT
    *,
    n_frontier / n_tasks AS frontier_share,
    mean_pass_rate - lag(mean_pass_rate) OVER (
        PARTITION BY run_id ORDER BY iteration, solver_checkpoint
    ) AS mean_pass_rate_change
FROM per_iteration
"""

# Per labelled task, the checks that exist for its pseudo-label: agreement with
# the Challenger's own answer, and for executor-labelled tasks whether the
# Solver's most common answer (ties broken by the answer text) was right.
VIEWS["label_checks"] = """
WITH answer_counts AS (
    SELECT task_id, checkpoint, extracted_answer, count(*) AS n
    FROM trajectories
    WHERE role = 'solver' AND extracted_answer IS NOT NULL
    GROUP BY task_id, checkpoint, extracted_answer
),
most_common AS (
    SELECT task_id, checkpoint,
           first(extracted_answer ORDER BY n DESC, extracted_answer) AS majority_answer
    FROM answer_counts
    GROUP BY task_id, checkpoint
)
SELECT
    l.task_id, l.run_id, l.iteration, l.kind, l.solver_checkpoint, l.label_source,
    l.label, l.majority_share,
    least(floor(l.majority_share * 5) / 5, 0.8) AS confidence_from,
    l.reference_answer, l.agrees_with_reference, m.majority_answer,
    CASE WHEN l.label_source = 'executor' THEN m.majority_answer IS NOT DISTINCT FROM l.label
    END AS majority_matches_executor
FROM labelled_tasks AS l
LEFT JOIN most_common AS m
    ON m.task_id = l.task_id AND m.checkpoint = l.solver_checkpoint
WHERE l.agrees_with_reference IS NOT NULL OR l.label_source = 'executor'
"""

# Pseudo-label precision by confidence bucket (p̂ in [from, from + 0.2)).
VIEWS["label_quality"] = """
SELECT
    run_id, iteration, kind, label_source, confidence_from,
    count(*) AS n_labels,
    count(agrees_with_reference) AS n_reference_checked,
    avg(agrees_with_reference::INTEGER) AS reference_agreement,
    count(majority_matches_executor) AS n_executor_checked,
    avg(majority_matches_executor::INTEGER) AS executor_agreement,
    avg(majority_share) AS mean_majority_share
FROM label_checks
GROUP BY run_id, iteration, kind, label_source, confidence_from
"""

# One row per part of each Challenger reward (long format, easy to pivot).
VIEWS["challenger_reward_parts"] = """
WITH parts AS (
    SELECT r.*, unnest(json_keys(r.parts_json)) AS part
    FROM rewards AS r
    WHERE r.role = 'challenger'
)
SELECT
    p.reward_id, p.task_id, p.run_id, p.iteration, t.kind, p.reward, p.part,
    (p.parts_json ->> p.part)::DOUBLE AS value, d.pass_rate, d.band
FROM parts AS p
LEFT JOIN tasks AS t ON t.task_id = p.task_id
LEFT JOIN (
    SELECT * FROM labelled_tasks WHERE is_latest
) AS d ON d.task_id = p.task_id
"""

VIEWS["challenger_rewards_by_iteration"] = """
SELECT
    run_id, iteration, part,
    count(*) AS n_rewards, avg(value) AS mean_value, min(value) AS min_value,
    max(value) AS max_value, avg(reward) AS mean_reward
FROM challenger_reward_parts
GROUP BY run_id, iteration, part
"""

# Per grounding document: proposals, how many became valid, labelled and
# frontier tasks, and the share of proposals that reached the frontier.
VIEWS["document_yield"] = """
SELECT
    d.doc_id, d.source, d.title, d.n_chars,
    count(t.task_id) AS n_proposals,
    count(*) FILTER (WHERE t.parse_status = 'valid') AS n_valid,
    count(l.task_id) AS n_labelled,
    count(*) FILTER (WHERE l.band = 'frontier') AS n_frontier,
    count(*) FILTER (WHERE l.band = 'frontier') / count(t.task_id) AS frontier_yield,
    avg(l.pass_rate) AS mean_pass_rate,
    avg(l.majority_share) AS mean_majority_share,
    avg(l.agrees_with_reference::INTEGER) AS reference_agreement
FROM documents AS d
JOIN tasks AS t ON t.doc_id = d.doc_id
LEFT JOIN labelled_tasks AS l ON l.task_id = t.task_id AND l.is_latest
GROUP BY d.doc_id, d.source, d.title, d.n_chars
"""

# Sandbox events per run, iteration, task kind and event kind, beside the
# number of tasks of that kind, so the rate of tasks that hit the sandbox shows.
VIEWS["sandbox_events_by_kind"] = """
WITH events AS (
    SELECT coalesce(e.run_id, t.run_id) AS run_id, t.iteration, t.kind AS task_kind,
           e.kind AS event_kind, e.task_id, e.created_at
    FROM sandbox_events AS e
    LEFT JOIN tasks AS t ON t.task_id = e.task_id
),
task_counts AS (
    SELECT run_id, iteration, kind AS task_kind, count(*) AS n_tasks_of_kind
    FROM tasks
    GROUP BY run_id, iteration, kind
)
SELECT
    e.run_id, e.iteration, e.task_kind, e.event_kind,
    count(*) AS n_events,
    count(DISTINCT e.task_id) AS n_tasks_hit,
    c.n_tasks_of_kind,
    count(DISTINCT e.task_id) / c.n_tasks_of_kind AS task_hit_rate,
    min(e.created_at) AS first_at,
    max(e.created_at) AS last_at
FROM events AS e
LEFT JOIN task_counts AS c
    ON c.run_id IS NOT DISTINCT FROM e.run_id
    AND c.iteration IS NOT DISTINCT FROM e.iteration
    AND c.task_kind IS NOT DISTINCT FROM e.task_kind
GROUP BY e.run_id, e.iteration, e.task_kind, e.event_kind, c.n_tasks_of_kind
"""


def create_views(conn: duckdb.DuckDBPyConnection) -> None:
    """Create or replace every view; the caller owns the transaction."""
    for name, select in VIEWS.items():
        conn.execute(f'CREATE OR REPLACE VIEW "{name}" AS {select}')
