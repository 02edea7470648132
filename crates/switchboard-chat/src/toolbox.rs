//! The functions a conversation offers the model: their names on the wire, the budget that
//! decides whether the model sees every schema or searches for them, and that search.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchboard_domain::ConnectorId;
use switchboard_llm::ToolSpec;

/// The name of the built-in tool the model searches functions with when there are too many
/// to show them all.
pub const SEARCH_FUNCTIONS: &str = "search_functions";

/// Longest tool name the providers accept (OpenAI's limit; Mistral's is the same).
const MAX_NAME: usize = 64;

/// One connector function the model may be offered.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// The connector it belongs to.
    pub connector: ConnectorId,
    /// The connector's name, as the admin registered it.
    pub connector_name: String,
    /// The function's name on its server.
    pub function: String,
    /// Its description, already sanitized.
    pub description: String,
    /// Its input schema.
    pub input_schema: Value,
    /// Whether it says it changes nothing (`readOnlyHint`).
    pub read_only: bool,
    /// What the permission decision needs besides the conversation's context.
    pub policy: switchboard_policy::Input,
}

/// How many functions, by count and by estimated tokens, the model is given in full before it
/// gets [`SEARCH_FUNCTIONS`] instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most functions given in full.
    pub max_functions: usize,
    /// Most estimated tokens of names, descriptions and schemas given in full.
    pub max_tokens: usize,
    /// How many best matches a search returns, and how many are given in full up front.
    pub matches: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_functions: 64,
            max_tokens: 12_000,
            matches: 8,
        }
    }
}

/// The functions of one conversation, each under a name that is unique, stable and valid on
/// every provider's wire.
#[derive(Debug, Clone, Default)]
pub struct Toolbox {
    tools: Vec<Tool>,
    names: Vec<String>,
    by_name: HashMap<String, usize>,
    index: Index,
    over_budget: bool,
}

impl Toolbox {
    /// Names the functions and measures them against the budget. Functions that can never be
    /// called (blocked, held, removed) are left out by the caller or kept here to be refused
    /// with their rule; either works, since every call is decided again.
    pub fn new(mut tools: Vec<Tool>, budget: Budget) -> Self {
        tools.sort_by(|a, b| {
            (&a.connector_name, &a.function).cmp(&(&b.connector_name, &b.function))
        });
        let names = wire_names(&tools);
        let by_name = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let tokens: usize = tools
            .iter()
            .zip(&names)
            .map(|(t, n)| estimate_tokens(n, t))
            .sum();
        let over_budget = tools.len() > budget.max_functions || tokens > budget.max_tokens;
        let index =
            Index::build(tools.iter().zip(&names).map(|(t, n)| {
                format!("{n} {} {} {}", t.connector_name, t.function, t.description)
            }));
        Self {
            tools,
            names,
            by_name,
            index,
            over_budget,
        }
    }

    /// The function the model calls by `name`.
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// The name the model calls `tool` by.
    pub fn name_of(&self, connector: ConnectorId, function: &str) -> Option<&str> {
        self.tools
            .iter()
            .position(|t| t.connector == connector && t.function == function)
            .map(|i| self.names[i].as_str())
    }

    /// Whether the functions exceed the budget, so the model searches them.
    pub fn searching(&self) -> bool {
        self.over_budget
    }

    /// How many functions there are.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The tools given to the model: every function when within budget; otherwise
    /// [`SEARCH_FUNCTIONS`], the best matches for `query` and the functions already `revealed`.
    pub fn specs(&self, query: &str, revealed: &BTreeSet<String>, matches: usize) -> Vec<ToolSpec> {
        if !self.over_budget {
            return (0..self.tools.len())
                .filter(|&i| self.offered(i))
                .map(|i| self.spec(i))
                .collect();
        }
        let mut chosen: Vec<usize> = self
            .search(query, matches)
            .into_iter()
            .chain(revealed.iter().filter_map(|n| self.by_name.get(n).copied()))
            .filter(|&i| self.offered(i))
            .collect();
        chosen.sort_unstable();
        chosen.dedup();
        std::iter::once(search_spec())
            .chain(chosen.into_iter().map(|i| self.spec(i)))
            .collect()
    }

    /// Runs [`SEARCH_FUNCTIONS`]: the names of the best matches, and the text the model is
    /// given back.
    pub fn run_search(&self, arguments: &Value, matches: usize) -> (Vec<String>, String) {
        let query = arguments.get("query").and_then(Value::as_str).unwrap_or("");
        let limit = arguments
            .get("limit")
            .and_then(Value::as_u64)
            .map_or(matches, |n| (n as usize).clamp(1, matches.max(1) * 4));
        let found: Vec<usize> = self
            .search(query, limit * 2)
            .into_iter()
            .filter(|&i| self.offered(i))
            .take(limit)
            .collect();
        let names: Vec<String> = found.iter().map(|&i| self.names[i].clone()).collect();
        let listed: Vec<Value> = found
            .iter()
            .map(|&i| json!({"name": self.names[i], "description": self.tools[i].description}))
            .collect();
        let text = if listed.is_empty() {
            format!("No function matches \"{query}\". Try other words.")
        } else {
            format!(
                "{} matching functions; they can be called now.\n{}",
                listed.len(),
                Value::Array(listed)
            )
        };
        (names, text)
    }

    /// The best matches for `query`, best first.
    fn search(&self, query: &str, limit: usize) -> Vec<usize> {
        self.index.rank(query, limit)
    }

    /// Whether the model is shown a function: not when it could never be called now
    /// (blocked, "never", held, removed, connector unavailable). The model may still name
    /// one it saw in an earlier turn; that call is refused with its rule.
    fn offered(&self, i: usize) -> bool {
        switchboard_policy::decide(self.tools[i].policy).outcome
            != switchboard_policy::Outcome::Deny
    }

    fn spec(&self, i: usize) -> ToolSpec {
        let t = &self.tools[i];
        ToolSpec {
            name: self.names[i].clone(),
            description: format!("[{}] {}", t.connector_name, t.description),
            parameters: t.input_schema.clone(),
        }
    }
}

fn search_spec() -> ToolSpec {
    ToolSpec {
        name: SEARCH_FUNCTIONS.to_owned(),
        description: "Finds the functions available in this conversation by what they do. \
                      Call it when no function given so far fits; the functions it finds can \
                      be called afterwards."
            .to_owned(),
        parameters: json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What the function should do, in a few words"},
                "limit": {"type": "integer", "minimum": 1, "description": "How many matches to return"}
            },
            "required": ["query"]
        }),
    }
}

/// A rough token count: about four bytes a token, which is close enough for a budget.
fn estimate_tokens(name: &str, tool: &Tool) -> usize {
    (name.len() + tool.description.len() + tool.input_schema.to_string().len()).div_ceil(4)
}

/// `connector__function`, reduced to the characters every provider accepts and to 64 bytes;
/// a name that had to be shortened or clashes with another gets a short hash of its origin,
/// so it stays stable across turns.
fn wire_names(tools: &[Tool]) -> Vec<String> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut names: Vec<String> = tools
        .iter()
        .map(|t| format!("{}__{}", t.connector_name, clean(&t.function)))
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for n in &names {
        *seen.entry(n.clone()).or_default() += 1;
    }
    for (name, tool) in names.iter_mut().zip(tools) {
        let clashes = seen[name.as_str()] > 1 || name == SEARCH_FUNCTIONS;
        if name.len() > MAX_NAME || clashes {
            let digest = Sha256::digest(format!("{}\n{}", tool.connector, tool.function));
            let suffix = hex::encode(&digest[..4]);
            name.truncate(MAX_NAME - suffix.len() - 1);
            name.push('_');
            name.push_str(&suffix);
        }
    }
    names
}

/// A small BM25 index over the functions' words.
#[derive(Debug, Clone, Default)]
struct Index {
    docs: Vec<HashMap<String, u32>>,
    lengths: Vec<usize>,
    frequency: HashMap<String, u32>,
    average: f64,
}

impl Index {
    fn build(texts: impl Iterator<Item = String>) -> Self {
        let mut index = Index::default();
        for text in texts {
            let mut counts: HashMap<String, u32> = HashMap::new();
            let words = words(&text);
            index.lengths.push(words.len());
            for w in words {
                *counts.entry(w).or_default() += 1;
            }
            for w in counts.keys() {
                *index.frequency.entry(w.clone()).or_default() += 1;
            }
            index.docs.push(counts);
        }
        let total: usize = index.lengths.iter().sum();
        index.average = total as f64 / index.docs.len().max(1) as f64;
        index
    }

    /// Documents by BM25 score for the query's words, best first; ties keep index order, and
    /// documents that match no word are left out.
    fn rank(&self, query: &str, limit: usize) -> Vec<usize> {
        const K1: f64 = 1.2;
        const B: f64 = 0.75;
        let terms: BTreeSet<String> = words(query).into_iter().collect();
        let n = self.docs.len() as f64;
        let mut scored: Vec<(f64, usize)> = self
            .docs
            .iter()
            .enumerate()
            .filter_map(|(i, doc)| {
                let score: f64 = terms
                    .iter()
                    .filter_map(|t| {
                        let tf = f64::from(*doc.get(t)?);
                        let df = f64::from(self.frequency[t]);
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        let norm = 1.0 - B + B * self.lengths[i] as f64 / self.average.max(1.0);
                        Some(idf * tf * (K1 + 1.0) / (tf + K1 * norm))
                    })
                    .sum();
                (score > 0.0).then_some((score, i))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(limit).map(|(_, i)| i).collect()
    }
}

/// Lowercased words, split at anything not a letter or digit and at camelCase humps, with a
/// crude plural folded so "issues" finds "issue".
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            let w = std::mem::take(word);
            let w = match w.strip_suffix('s') {
                Some(stem) if stem.len() > 2 && !stem.ends_with('s') => stem.to_owned(),
                _ => w,
            };
            out.push(w);
        }
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            if c.is_uppercase() && prev_lower {
                flush(&mut word, &mut out);
            }
            prev_lower = c.is_lowercase() || c.is_ascii_digit();
            word.extend(c.to_lowercase());
        } else {
            flush(&mut word, &mut out);
            prev_lower = false;
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use switchboard_domain::{FloorPolicy, MemberPreference, ReviewState};

    pub(crate) fn tool(connector: &str, function: &str, description: &str) -> Tool {
        Tool {
            connector: ConnectorId(uuid_for(connector)),
            connector_name: connector.to_owned(),
            function: function.to_owned(),
            description: description.to_owned(),
            input_schema: json!({"type": "object", "properties": {}}),
            read_only: false,
            policy: switchboard_policy::Input {
                connector_available: true,
                review: ReviewState::Approved,
                floor: FloorPolicy::Allowed,
                preference: Some(MemberPreference::Always),
                context: switchboard_policy::Context::Clean,
            },
        }
    }

    fn uuid_for(name: &str) -> uuid::Uuid {
        let digest = Sha256::digest(name.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Uuid::from_bytes(bytes)
    }

    #[test]
    fn names_are_valid_unique_and_stable() {
        let long = "x".repeat(80);
        let tools = vec![
            tool("github", "list issues", "Lists issues"),
            tool("github", "list_issues", "Lists issues too"),
            tool("jira", &long, "Long"),
            tool("search", "functions", "Clashes with nothing"),
        ];
        let a = Toolbox::new(tools.clone(), Budget::default());
        let b = Toolbox::new(tools.into_iter().rev().collect(), Budget::default());
        assert_eq!(a.names, b.names, "order of input does not matter");
        let unique: BTreeSet<_> = a.names.iter().collect();
        assert_eq!(unique.len(), a.names.len());
        for n in &a.names {
            assert!(n.len() <= MAX_NAME, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "{n}"
            );
        }
        assert!(
            a.names
                .iter()
                .any(|n| n.starts_with("github__list_issues_"))
        );
        assert_eq!(a.get(&a.names[0]).unwrap().function, a.tools[0].function);
    }

    #[test]
    fn within_budget_every_function_is_given() {
        let box_ = Toolbox::new(
            vec![tool("a", "one", "First"), tool("b", "two", "Second")],
            Budget::default(),
        );
        assert!(!box_.searching());
        let specs = box_.specs("anything", &BTreeSet::new(), 8);
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a__one", "b__two"]);
        assert_eq!(specs[0].description, "[a] First");
    }

    #[test]
    fn over_budget_the_model_searches() {
        let mut tools = Vec::new();
        for c in 0..20 {
            for f in 0..25 {
                tools.push(tool(
                    &format!("c{c}"),
                    &format!("f{f}"),
                    &format!("Does chore number {f} of team {c}"),
                ));
            }
        }
        tools.push(tool(
            "weather",
            "forecast",
            "Gives the weather forecast for a city",
        ));
        let box_ = Toolbox::new(tools, Budget::default());
        assert!(box_.searching());
        let specs = box_.specs("what is the weather in Paris", &BTreeSet::new(), 3);
        assert_eq!(specs[0].name, SEARCH_FUNCTIONS);
        assert_eq!(
            specs[1].name, "weather__forecast",
            "best match given up front"
        );
        assert!(specs.len() <= 4);

        let (found, text) = box_.run_search(&json!({"query": "forecast of the weather"}), 3);
        assert_eq!(found[0], "weather__forecast");
        assert!(text.contains("weather__forecast"), "{text}");
        let revealed: BTreeSet<String> = ["c3__f7".to_owned()].into();
        let specs = box_.specs("weather", &revealed, 3);
        assert!(
            specs.iter().any(|s| s.name == "c3__f7"),
            "revealed functions stay given"
        );

        let (none, text) = box_.run_search(&json!({"query": "zzzz"}), 3);
        assert!(none.is_empty());
        assert!(text.contains("No function matches"));
    }

    #[test]
    fn too_many_tokens_is_over_budget_too() {
        let mut t = tool("a", "big", "Big");
        t.input_schema = json!({"description": "y".repeat(60_000)});
        assert!(Toolbox::new(vec![t], Budget::default()).searching());
    }

    #[test]
    fn words_split_case_and_plurals() {
        assert_eq!(
            words("listIssues of GitHub"),
            ["list", "issue", "of", "git", "hub"]
        );
        assert_eq!(words("class_names"), ["class", "name"]);
    }
}
