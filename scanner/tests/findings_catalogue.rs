//! The reviewers' findings catalogue (`docs/src/reviewer/findings.md`) against the rule
//! catalogue and the default YARA rules: a rule added, renamed or given another default
//! severity without the page following would leave reviewers guessing, so it fails here.

use std::collections::BTreeSet;

use plugstore_scanner::rules;
use plugstore_scanner::yara_rules::DEFAULT_RULES_SOURCE;

const CATALOGUE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/src/reviewer/findings.md"
);

/// What to do about any failure below.
const FIX: &str = "update docs/src/reviewer/findings.md (one table row per rule: \
                   | `id` | default severity | what it means | what a reviewer should check |)";

fn catalogue() -> String {
    std::fs::read_to_string(CATALOGUE)
        .unwrap_or_else(|error| panic!("cannot read the findings catalogue {CATALOGUE}: {error}"))
}

/// The table rows whose first cell is exactly `` `id` ``.
fn rows_of<'a>(text: &'a str, id: &str) -> Vec<&'a str> {
    let start = format!("| `{id}` |");
    text.lines()
        .filter(|line| line.trim_start().starts_with(&start))
        .collect()
}

/// The first word of a row's second cell, the severity column: `low` of
/// `| `id` | low, or medium for … |`.
fn severity_cell(row: &str) -> &str {
    let cell = row.split('|').nth(2).map_or("", str::trim);
    cell.trim_start_matches('`')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
}

/// Checks that `id` has exactly one row and that its severity column starts with `severity`;
/// adds what is wrong to `problems`.
fn check_row(text: &str, id: &str, severity: &str, problems: &mut Vec<String>) {
    let rows = rows_of(text, id);
    match rows.as_slice() {
        [] if !text.contains(&format!("`{id}`")) => {
            problems.push(format!("`{id}` is missing"));
        }
        [] => problems.push(format!(
            "`{id}` is mentioned but has no table row starting with | `{id}` |"
        )),
        [row] => {
            let found = severity_cell(row);
            if found != severity {
                problems.push(format!(
                    "the row of `{id}` gives the severity {found:?}, but the default is {severity:?}"
                ));
            }
        }
        _ => problems.push(format!("`{id}` has {} rows instead of one", rows.len())),
    }
}

/// Every public rule of the default YARA set with the severity in its metadata, from the
/// source: `rule NAME` at the start of a line (so `private rule` is left out), then the first
/// `severity = "…"` after it.
fn default_yara_rules() -> Vec<(String, Option<String>)> {
    let mut found: Vec<(String, Option<String>)> = Vec::new();
    for line in DEFAULT_RULES_SOURCE.lines() {
        if let Some(rest) = line.strip_prefix("rule ") {
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push((name, None));
            continue;
        }
        let Some(value) = line.trim_start().strip_prefix("severity") else {
            continue;
        };
        let Some(value) = value.trim_start().strip_prefix('=') else {
            continue;
        };
        if let Some((_, severity)) = found.last_mut() {
            severity.get_or_insert_with(|| value.trim().trim_matches('"').to_ascii_lowercase());
        }
    }
    found
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "the findings catalogue is out of date with {what}:\n- {}\n{FIX}",
        problems.join("\n- ")
    );
}

#[test]
fn every_rule_has_a_row_with_its_default_severity() {
    let text = catalogue();
    let mut problems = Vec::new();
    for rule in rules::ALL {
        check_row(&text, rule.id, rule.severity.as_str(), &mut problems);
    }
    assert_no_problems("scanner/src/rules.rs (rules::ALL)", &problems);
}

#[test]
fn every_default_yara_rule_has_a_row_with_its_severity() {
    let text = catalogue();
    let yara = default_yara_rules();
    assert!(
        yara.len() >= 10,
        "found only {} rules in scanner/rules/default.yar: does this test still parse it?",
        yara.len()
    );
    let mut problems = Vec::new();
    for (name, severity) in &yara {
        match severity {
            Some(severity) => check_row(&text, &format!("yara.{name}"), severity, &mut problems),
            None => problems.push(format!(
                "rule {name} in scanner/rules/default.yar has no severity this test can read"
            )),
        }
    }
    assert_no_problems("scanner/rules/default.yar", &problems);
}

#[test]
fn no_row_names_a_rule_that_does_not_exist() {
    let text = catalogue();
    let areas: BTreeSet<&str> = rules::ALL
        .iter()
        .filter_map(|rule| rule.id.split_once('.').map(|(area, _)| area))
        .collect();
    let yara: BTreeSet<String> = default_yara_rules()
        .into_iter()
        .map(|(name, _)| format!("yara.{name}"))
        .collect();
    let mut problems = Vec::new();
    for line in text.lines().map(str::trim_start) {
        let Some(cell) = line
            .strip_prefix('|')
            .and_then(|rest| rest.split('|').next())
        else {
            continue;
        };
        let Some(id) = cell
            .trim()
            .strip_prefix('`')
            .and_then(|id| id.strip_suffix('`'))
        else {
            continue;
        };
        // Only rows of rule ids: settings, constants and limit keys share the page.
        let is_rule_id = id
            .split_once('.')
            .is_some_and(|(area, _)| areas.contains(area));
        if is_rule_id && rules::by_id(id).is_none() && !yara.contains(id) {
            problems.push(format!(
                "the row of `{id}` names neither a rule of rules::ALL nor a default YARA rule"
            ));
        }
    }
    assert_no_problems(
        "scanner/src/rules.rs and scanner/rules/default.yar",
        &problems,
    );
}
