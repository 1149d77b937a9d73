//! The price table: USD per million tokens, per model, each price with the
//! day it was read and its public source. The bundled table is
//! `assets/prices.json`; the config key `ccproxy.prices` names a file that
//! replaces it.
//!
//! Model names are matched exactly after normalisation (lowercase; provider
//! prefixes such as `anthropic/`, `models/`, `us.anthropic.` dropped; date
//! suffixes such as `-20250929`, `-2024-08-06`, `@20240620`, Bedrock's
//! `-v1:0` and `-latest` dropped), so `claude-sonnet-4-5-20250929` is priced
//! as `claude-sonnet-4-5`. A name that still does not match has no price:
//! no guess by prefix (`gpt-4o-mini` is not `gpt-4o`).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Usage;

/// The bundled table.
const BUNDLED: &str = include_str!("../../assets/prices.json");

/// Prices of one model, USD per million tokens.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Price {
    /// Fresh (uncached) input.
    pub input: f64,
    /// Output (reasoning included).
    pub output: f64,
    /// Cache reads; without it, cache reads are priced as fresh input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    /// Cache writes (5-minute TTL, the default); without it, as fresh input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// Cache writes with the 1-hour TTL; without it, as `cache_write`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<f64>,
}

/// Prices that replace the base ones for a request whose prompt is long.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongPrice {
    /// Prompt tokens (fresh + cache read + cache write) above which these apply.
    pub above: u64,
    /// Fresh input.
    pub input: f64,
    /// Output.
    pub output: f64,
    /// Cache reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    /// Cache writes (5 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// Cache writes (1 hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<f64>,
}

/// One model's entry in the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Fresh input.
    pub input: f64,
    /// Output (reasoning included).
    pub output: f64,
    /// Cache reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    /// Cache writes (5 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// Cache writes (1 hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<f64>,
    /// Long-context prices, when the provider has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long: Option<LongPrice>,
    /// The day the price was read (`YYYY-MM-DD`).
    pub date: String,
    /// Where it was read (a public URL).
    pub source: String,
    /// Other names of the same model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl Entry {
    /// The prices for a request with `prompt` prompt tokens.
    pub fn price(&self, prompt: u64) -> Price {
        match &self.long {
            Some(l) if prompt > l.above => Price {
                input: l.input,
                output: l.output,
                cache_read: l.cache_read,
                cache_write: l.cache_write,
                cache_write_1h: l.cache_write_1h,
            },
            _ => Price {
                input: self.input,
                output: self.output,
                cache_read: self.cache_read,
                cache_write: self.cache_write,
                cache_write_1h: self.cache_write_1h,
            },
        }
    }
}

/// The file: `models` (other top-level keys, such as `about`, are notes).
#[derive(Debug, Deserialize)]
struct File {
    models: HashMap<String, Entry>,
}

/// Why a price table could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    /// The file could not be read.
    #[error("cannot read the price table {path}: {source} (fix or remove ccproxy.prices)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not a valid price table.
    #[error(
        "the price table {path} is not valid: {message} (see assets/prices.json for the format)"
    )]
    Invalid { path: String, message: String },
}

/// The table of this process (installed once by the engine from the config).
static CURRENT: std::sync::OnceLock<PriceTable> = std::sync::OnceLock::new();

/// Model → price.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    entries: Vec<(String, Entry)>,
    by_name: HashMap<String, usize>,
}

impl PriceTable {
    /// The table bundled with ccproxy (`assets/prices.json`).
    pub fn bundled() -> Self {
        // The bundled file is checked by a unit test; a broken one gives an empty table.
        Self::parse(BUNDLED, "assets/prices.json").unwrap_or_default()
    }

    /// Make `table` the one [`PriceTable::shared`] returns; only the first call counts.
    pub fn install(table: Self) -> bool {
        CURRENT.set(table).is_ok()
    }

    /// The process-wide table: the installed one, else the bundled one.
    pub fn shared() -> &'static Self {
        CURRENT.get_or_init(Self::bundled)
    }

    /// The table the config names (`ccproxy.prices`), else the bundled one.
    pub fn configured(path: Option<&Path>) -> Result<Self, PriceError> {
        path.map_or_else(|| Ok(Self::bundled()), Self::load)
    }

    /// A table from the file the config names.
    pub fn load(path: &Path) -> Result<Self, PriceError> {
        let text = std::fs::read_to_string(path).map_err(|source| PriceError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse a table; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PriceError> {
        let invalid = |message: String| PriceError::Invalid {
            path: origin.to_string(),
            message,
        };
        let file: File = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut entries: Vec<(String, Entry)> = file.models.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut by_name = HashMap::new();
        for (i, (name, entry)) in entries.iter().enumerate() {
            let long = entry.long.as_ref().map(|l| entry.price(l.above + 1));
            for p in std::iter::once(entry.price(0)).chain(long) {
                let all = [p.input, p.output]
                    .into_iter()
                    .chain(p.cache_read)
                    .chain(p.cache_write)
                    .chain(p.cache_write_1h);
                if all.into_iter().any(|x| !x.is_finite() || x < 0.0) {
                    return Err(invalid(format!(
                        "model {name}: a price is negative or not a number"
                    )));
                }
            }
            if entry.date.trim().is_empty() || entry.source.trim().is_empty() {
                return Err(invalid(format!(
                    "model {name}: every price needs a date and a source"
                )));
            }
            for n in std::iter::once(name).chain(&entry.aliases) {
                if by_name.insert(normalize(n), i).is_some() {
                    return Err(invalid(format!("model name {n} appears twice")));
                }
            }
        }
        Ok(Self { entries, by_name })
    }

    /// Number of models priced.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is priced.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of a model: its table name and prices.
    pub fn lookup(&self, model: &str) -> Option<(&str, &Entry)> {
        let i = *self.by_name.get(&normalize(model))?;
        self.entries.get(i).map(|(n, e)| (n.as_str(), e))
    }

    /// The cost of one exchange in USD; `None` when the model is unknown or
    /// no token was counted.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        if usage.input.is_none() && usage.output.is_none() {
            return None;
        }
        let (_, entry) = self.lookup(model)?;
        let p = entry.price(usage.prompt_total());
        let tokens = |n: Option<u64>| n.unwrap_or(0) as f64;
        let write_1h = usage
            .cache_creation_1h
            .unwrap_or(0)
            .min(usage.cache_creation.unwrap_or(0));
        let write_5m = usage.cache_creation.unwrap_or(0) - write_1h;
        let cache_write = p.cache_write.unwrap_or(p.input);
        let micro = tokens(usage.input) * p.input
            + tokens(usage.output) * p.output
            + tokens(usage.cache_read) * p.cache_read.unwrap_or(p.input)
            + write_5m as f64 * cache_write
            + write_1h as f64 * p.cache_write_1h.unwrap_or(cache_write);
        Some(micro / 1_000_000.0)
    }
}

/// The name a model is matched by: lowercase, without provider prefix,
/// date or version suffix.
pub fn normalize(model: &str) -> String {
    let mut m = model.trim().to_ascii_lowercase();
    if let Some((_, tail)) = m.rsplit_once('/') {
        m = tail.to_string();
    }
    for prefix in ["us.", "eu.", "apac.", "global."] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest.to_string();
        }
    }
    for prefix in ["anthropic.", "openai.", "google.", "meta."] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest.to_string();
        }
    }
    if let Some((base, _)) = m.split_once('@') {
        m = base.to_string();
    }
    if let Some(idx) = m.rfind("-v") {
        // Bedrock: `…-v1:0`.
        let tail = &m[idx + 2..];
        if tail.contains(':') && tail.bytes().all(|b| b.is_ascii_digit() || b == b':') {
            m.truncate(idx);
        }
    }
    if let Some(idx) = m.find('[') {
        // Claude Code's `…[1m]` context marker.
        m.truncate(idx);
    }
    for suffix in ["-latest"] {
        if let Some(rest) = m.strip_suffix(suffix) {
            m = rest.to_string();
        }
    }
    strip_date(&m).to_string()
}

/// Drop a trailing `-YYYYMMDD` or `-YYYY-MM-DD`.
fn strip_date(m: &str) -> &str {
    let b = m.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if b.len() > 9 && b[b.len() - 9] == b'-' && digits(&b[b.len() - 8..]) {
        return &m[..m.len() - 9];
    }
    if b.len() > 11 {
        let t = &b[b.len() - 11..];
        if t[0] == b'-'
            && digits(&t[1..5])
            && t[5] == b'-'
            && digits(&t[6..8])
            && t[8] == b'-'
            && digits(&t[9..11])
        {
            return &m[..m.len() - 11];
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_table_parses_and_every_entry_is_dated_and_sourced() {
        let t = PriceTable::parse(BUNDLED, "bundled").expect("bundled table");
        assert!(t.len() >= 20, "{}", t.len());
        for (name, e) in &t.entries {
            assert!(e.source.starts_with("https://"), "{name}");
            assert_eq!(e.date.len(), 10, "{name}");
        }
    }

    #[test]
    fn names_normalise_to_the_base_model() {
        for (given, want) in [
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("anthropic/claude-3-5-haiku-20241022", "claude-3-5-haiku"),
            (
                "us.anthropic.claude-sonnet-4-20250514-v1:0",
                "claude-sonnet-4",
            ),
            ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
            ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("models/gemini-2.5-flash", "gemini-2.5-flash"),
            ("claude-opus-4-5[1m]", "claude-opus-4-5"),
            ("GPT-4o-mini", "gpt-4o-mini"),
        ] {
            assert_eq!(normalize(given), want, "{given}");
        }
    }

    #[test]
    fn unknown_or_prefix_only_models_have_no_price() {
        let t = PriceTable::bundled();
        let u = Usage {
            input: Some(10),
            output: Some(10),
            ..Usage::default()
        };
        assert_eq!(t.cost("my-local-llama", &u), None);
        assert_eq!(t.cost("gpt-4o-mini-tts", &u), None);
        assert!(t.cost("gpt-4o-mini", &u).is_some());
    }

    #[test]
    fn cost_of_a_known_model_by_hand() {
        // claude-sonnet-4-5 (2025-11-25, docs.anthropic.com): $3 in, $15 out,
        // $0.30 cache read, $3.75 5m write, $6 1h write, per million tokens.
        let t = PriceTable::bundled();
        let u = Usage {
            input: Some(1_000),
            output: Some(2_000),
            cache_read: Some(100_000),
            cache_creation: Some(10_000),
            cache_creation_1h: Some(4_000),
            reasoning: None,
        };
        let by_hand =
            (1_000.0 * 3.0 + 2_000.0 * 15.0 + 100_000.0 * 0.30 + 6_000.0 * 3.75 + 4_000.0 * 6.0)
                / 1e6;
        let got = t.cost("claude-sonnet-4-5-20250929", &u).expect("priced");
        assert!((got - by_hand).abs() < 1e-12, "{got} vs {by_hand}");
        assert!((by_hand - 0.1095).abs() < 1e-12);
    }

    #[test]
    fn long_prompts_use_the_long_context_price() {
        let t = PriceTable::bundled();
        let u = Usage {
            input: Some(250_000),
            output: Some(1_000_000),
            ..Usage::default()
        };
        let got = t.cost("gemini-2.5-pro", &u).expect("priced");
        assert!((got - (0.25 * 2.5 + 15.0)).abs() < 1e-9, "{got}");
    }

    #[test]
    fn a_bad_user_table_is_a_clear_error() {
        let e = PriceTable::parse(
            r#"{"models":{"m":{"input":-1,"output":1,"date":"d","source":"s"}}}"#,
            "p.json",
        )
        .expect_err("negative");
        assert!(e.to_string().contains("model m"), "{e}");
        let e = PriceTable::parse(r#"{"models":{"m":{"input":1,"output":1}}}"#, "p.json")
            .expect_err("undated");
        assert!(e.to_string().contains("p.json"), "{e}");
        let t = PriceTable::parse(
            r#"{"models":{"corp-llm":{"input":1,"output":2,"date":"2026-01-01","source":"internal"}}}"#,
            "p.json",
        )
        .expect("valid");
        assert_eq!(t.lookup("corp-llm").map(|(n, _)| n), Some("corp-llm"));
    }
}
