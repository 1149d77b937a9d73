//! The flows the TUI holds: a pure [`FlowList`] with an index by id, the
//! visible (filtered) set, the selection, a memory budget for bodies and the
//! merge of stored history pages. No drawing, no I/O.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::flow::filter::Filter;
use crate::flow::{Flow, TrafficType};
use crate::llm::{Analysis, PriceTable};

/// Largest live body kept per in-flight flow (the completed flow carries the final copy).
const MAX_LIVE_BODY: usize = 64 << 20;
/// Body bytes the list keeps in memory by default; older bodies beyond it are dropped.
pub const BODY_BUDGET: usize = 64 << 20;

/// One row of the list.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The latest state of the flow.
    pub flow: Arc<Flow>,
    /// Response bytes received live while in flight.
    pub live: Vec<u8>,
    /// The bodies were dropped to stay within the memory budget.
    pub trimmed: bool,
    /// What the LLM / MCP exchange means, once it completed (kept when the
    /// bodies are trimmed, so the columns and totals stay right).
    pub llm: Option<Arc<Analysis>>,
}

impl Entry {
    fn new(flow: Arc<Flow>) -> Self {
        let llm = analysis_of(&flow);
        Self {
            flow,
            live: Vec::new(),
            trimmed: false,
            llm,
        }
    }
}

/// The analysis of a completed flow: the one the engine's analysis stage set
/// on it, else (a flow from an engine without the stage, or from history
/// stored before it) computed here once with the bundled price table.
fn analysis_of(flow: &Flow) -> Option<Arc<Analysis>> {
    static PRICES: OnceLock<PriceTable> = OnceLock::new();
    if let Some(a) = &flow.llm {
        return Some(Arc::clone(a));
    }
    if !flow.is_complete() || !matches!(flow.traffic_type, TrafficType::Llm | TrafficType::Mcp) {
        return None;
    }
    crate::llm::analyze(flow, PRICES.get_or_init(PriceTable::bundled)).map(Arc::new)
}

/// Token, cost and cache totals over a set of flows (the header's figures).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Flows with an analysis.
    pub analysed: u64,
    /// Fresh input tokens.
    pub input: u64,
    /// Output tokens (reasoning included).
    pub output: u64,
    /// Input tokens read from the cache.
    pub cache_read: u64,
    /// Input tokens written to the cache.
    pub cache_creation: u64,
    /// Cost of the priced flows, USD.
    pub cost_usd: f64,
    /// Analysed flows whose model is not in the price table.
    pub unpriced: u64,
}

impl Totals {
    /// Add one analysis.
    pub fn add(&mut self, a: &Analysis) {
        self.analysed += 1;
        self.input += a.usage.input.unwrap_or(0);
        self.output += a.usage.output.unwrap_or(0);
        self.cache_read += a.usage.cache_read.unwrap_or(0);
        self.cache_creation += a.usage.cache_creation.unwrap_or(0);
        match a.cost_usd {
            Some(c) => self.cost_usd += c,
            None if !a.usage.is_empty() => self.unpriced += 1,
            None => {}
        }
    }

    /// Take one analysis out again (the flow left the visible set or was replaced).
    pub fn remove(&mut self, a: &Analysis) {
        self.analysed = self.analysed.saturating_sub(1);
        self.input = self.input.saturating_sub(a.usage.input.unwrap_or(0));
        self.output = self.output.saturating_sub(a.usage.output.unwrap_or(0));
        self.cache_read = self
            .cache_read
            .saturating_sub(a.usage.cache_read.unwrap_or(0));
        self.cache_creation = self
            .cache_creation
            .saturating_sub(a.usage.cache_creation.unwrap_or(0));
        match a.cost_usd {
            Some(c) => self.cost_usd = (self.cost_usd - c).max(0.0),
            None if !a.usage.is_empty() => self.unpriced = self.unpriced.saturating_sub(1),
            None => {}
        }
    }

    /// Cache read ÷ (input + cache read + cache creation), when any prompt was sent.
    pub fn cache_hit_rate(&self) -> Option<f64> {
        let prompt = self.input + self.cache_read + self.cache_creation;
        #[allow(clippy::cast_precision_loss)]
        (prompt > 0).then(|| self.cache_read as f64 / prompt as f64)
    }
}

fn body_len(f: &Flow) -> usize {
    f.request_body.len() + f.response_body.len()
}

fn type_index(t: TrafficType) -> usize {
    TrafficType::ALL.iter().position(|x| *x == t).unwrap_or(3)
}

/// Every flow held, oldest first, and which of them pass the filter.
#[derive(Debug)]
pub struct FlowList {
    entries: Vec<Entry>,
    index: HashMap<Uuid, usize>,
    /// Indices into `entries` that pass `filter`, ascending.
    visible: Vec<usize>,
    /// Selected entry (index into the entries, not the visible list).
    selected: Option<usize>,
    /// Keep the newest flow selected as flows arrive (`F`).
    pub follow: bool,
    filter: Filter,
    counts: [u64; 4],
    budget: usize,
    body_bytes: usize,
    body_order: VecDeque<Uuid>,
    /// Bumped whenever the set of analysed flows may have changed.
    generation: u64,
    /// Bumped when entries move (cleared, or a history page prepended).
    epoch: u64,
    /// Entries given an analysis in this epoch, in order (an entry may recur).
    analysed: Vec<usize>,
    /// The totals of the visible flows, kept up to date as they change (the
    /// header shows them every frame; summing 100,000 flows a frame is not cheap).
    totals: Totals,
}

impl Default for FlowList {
    fn default() -> Self {
        Self::new(BODY_BUDGET)
    }
}

impl FlowList {
    /// An empty list that keeps at most `budget` body bytes, following the newest flow.
    pub fn new(budget: usize) -> Self {
        Self {
            entries: Vec::new(),
            index: HashMap::new(),
            visible: Vec::new(),
            selected: None,
            follow: true,
            filter: Filter::all(),
            counts: [0; 4],
            budget,
            body_bytes: 0,
            body_order: VecDeque::new(),
            generation: 0,
            epoch: 0,
            analysed: Vec::new(),
            totals: Totals::default(),
        }
    }

    /// Changes whenever a flow completes, or flows are cleared or prepended:
    /// what the sessions view compares to know its model is stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The entries given an analysis since the epoch began, in order, and
    /// the epoch: a reader that remembers how far it read needs to look
    /// only at the new ones, until the epoch changes (then every entry may
    /// have moved).
    pub fn analysed_log(&self) -> (u64, &[usize]) {
        (self.epoch, &self.analysed)
    }

    /// Every entry held, oldest first (filtered or not).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry of the flow with this id.
    pub fn entry(&self, id: &Uuid) -> Option<&Entry> {
        self.index.get(id).and_then(|&i| self.entries.get(i))
    }

    /// All flows held (filtered or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Flows passing the filter.
    pub fn visible_len(&self) -> usize {
        self.visible.len()
    }

    /// The `i`-th visible entry.
    pub fn visible_entry(&self, i: usize) -> Option<&Entry> {
        self.visible.get(i).and_then(|&e| self.entries.get(e))
    }

    /// The flows passing the filter, oldest first (for an export).
    pub fn visible_flows(&self) -> Vec<Arc<Flow>> {
        self.visible
            .iter()
            .filter_map(|&i| self.entries.get(i))
            .map(|e| Arc::clone(&e.flow))
            .collect()
    }

    /// Token, cost and cache totals of the flows passing the filter.
    pub fn visible_totals(&self) -> Totals {
        self.totals
    }

    fn sum_visible(&self) -> Totals {
        let mut t = Totals::default();
        for e in self.visible.iter().filter_map(|&i| self.entries.get(i)) {
            if let Some(a) = &e.llm {
                t.add(a);
            }
        }
        t
    }

    /// Position of the selection in the visible list.
    pub fn selected_pos(&self) -> Option<usize> {
        let sel = self.selected?;
        match self.visible.binary_search(&sel) {
            Ok(p) => Some(p),
            Err(p) => (!self.visible.is_empty()).then(|| p.min(self.visible.len() - 1)),
        }
    }

    /// The selected entry, when it passes the filter.
    pub fn selected_entry(&self) -> Option<&Entry> {
        self.visible_entry(self.selected_pos()?)
    }

    /// Flows held, by traffic type in [`TrafficType::ALL`] order.
    pub fn counts(&self) -> [u64; 4] {
        self.counts
    }

    /// Body bytes held right now.
    pub fn body_bytes(&self) -> usize {
        self.body_bytes
    }

    /// Most body bytes held; the oldest completed flows lose their bodies beyond it.
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
        self.enforce_budget();
    }

    /// The filter in effect.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Start time of the oldest flow held (where the next history page ends).
    pub fn oldest_start(&self) -> Option<DateTime<Utc>> {
        self.entries.first().map(|e| e.flow.start_time)
    }

    /// Insert a new flow or replace the held copy; true when it was new.
    pub fn upsert(&mut self, flow: Arc<Flow>) -> bool {
        let passes = self.filter.matches(&flow);
        if flow.is_complete() {
            self.generation += 1;
        }
        if let Some(&i) = self.index.get(&flow.id) {
            let was_visible = self.visible.binary_search(&i).is_ok();
            if was_visible {
                if let Some(a) = &self.entries[i].llm {
                    self.totals.remove(a);
                }
            }
            if flow.is_complete() {
                self.entries[i].llm = analysis_of(&flow);
                if self.entries[i].llm.is_some() {
                    self.analysed.push(i);
                }
            }
            if passes {
                if let Some(a) = &self.entries[i].llm {
                    self.totals.add(a);
                }
            }
            let old = std::mem::replace(&mut self.entries[i].flow, Arc::clone(&flow));
            self.entries[i].trimmed = false;
            self.body_bytes =
                self.body_bytes - body_len(&old).min(self.body_bytes) + body_len(&flow);
            let old_i = type_index(old.traffic_type);
            self.counts[old_i] = self.counts[old_i].saturating_sub(1);
            self.counts[type_index(flow.traffic_type)] += 1;
            match (self.visible.binary_search(&i), passes) {
                (Ok(p), false) => {
                    self.visible.remove(p);
                }
                (Err(p), true) => self.visible.insert(p, i),
                _ => {}
            }
            self.enforce_budget();
            return false;
        }
        let i = self.entries.len();
        self.counts[type_index(flow.traffic_type)] += 1;
        self.index.insert(flow.id, i);
        self.body_bytes += body_len(&flow);
        self.body_order.push_back(flow.id);
        self.entries.push(Entry::new(flow));
        if self.entries[i].llm.is_some() {
            self.analysed.push(i);
        }
        self.enforce_budget();
        if passes {
            self.visible.push(i);
            if let Some(a) = &self.entries[i].llm {
                self.totals.add(a);
            }
        }
        if self.follow || self.selected.is_none() {
            self.select_last();
        }
        true
    }

    /// The final record of a flow: the live copy of its body is no longer needed.
    pub fn complete(&mut self, flow: Arc<Flow>) {
        let id = flow.id;
        self.upsert(flow);
        if let Some(&i) = self.index.get(&id) {
            self.entries[i].live = Vec::new();
        }
    }

    /// Response bytes of an in-flight flow, as they arrive.
    pub fn append_live(&mut self, id: &Uuid, data: &[u8]) {
        if let Some(&i) = self.index.get(id) {
            let entry = &mut self.entries[i];
            if !entry.flow.is_complete() && entry.live.len() < MAX_LIVE_BODY {
                entry.live.extend_from_slice(data);
            }
        }
    }

    /// Forget every flow.
    pub fn clear(&mut self) {
        self.generation += 1;
        self.epoch += 1;
        self.analysed.clear();
        self.entries.clear();
        self.index.clear();
        self.visible.clear();
        self.selected = None;
        self.counts = [0; 4];
        self.body_bytes = 0;
        self.body_order.clear();
        self.totals = Totals::default();
    }

    /// Select the newest visible flow (keep the selection when none passes).
    pub fn select_last(&mut self) {
        self.selected = self.visible.last().copied().or(self.selected);
    }

    /// Move the selection by `delta` visible rows; true when that ran past the
    /// top (or the list is empty): the caller may load older flows.
    pub fn step(&mut self, delta: isize) -> bool {
        if self.visible.is_empty() {
            return true;
        }
        let pos = self.selected_pos().unwrap_or(0);
        let last = self.visible.len() - 1;
        let past_top = delta < 0 && pos == 0;
        let next = pos.saturating_add_signed(delta).min(last);
        self.selected = Some(self.visible[next]);
        self.follow = next == last && delta > 0 && self.follow;
        past_top
    }

    /// Apply a new filter to every flow held.
    pub fn set_filter(&mut self, filter: Filter) {
        self.filter = filter;
        self.refilter();
    }

    /// Re-apply the filter to every flow held.
    pub fn refilter(&mut self) {
        let filter = &self.filter;
        self.visible = if filter.is_all() {
            (0..self.entries.len()).collect()
        } else {
            visible_in(filter, &self.entries)
        };
        self.totals = self.sum_visible();
        if self.follow {
            self.select_last();
        }
    }

    /// Prepend a page of stored flows (any order), skipping those already
    /// held; the selection stays on its flow. Returns how many were added.
    pub fn merge_history(&mut self, flows: Vec<Flow>) -> usize {
        let mut older: Vec<Entry> = flows
            .into_iter()
            .filter(|f| !self.index.contains_key(&f.id))
            .map(|f| Entry::new(Arc::new(f)))
            .collect();
        if older.is_empty() {
            return 0;
        }
        self.generation += 1;
        self.epoch += 1;
        self.analysed.clear();
        older.sort_by_key(|e| e.flow.start_time);
        let k = older.len();
        for e in older.iter().rev() {
            self.counts[type_index(e.flow.traffic_type)] += 1;
            self.body_bytes += body_len(&e.flow);
            self.body_order.push_front(e.flow.id);
        }
        older.append(&mut self.entries);
        self.entries = older;
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.flow.id, i))
            .collect();
        self.selected = self.selected.map(|s| s + k);
        self.refilter();
        if self.selected.is_none() {
            self.select_last();
        }
        self.enforce_budget();
        k
    }

    /// Drop the bodies of the oldest completed flows until the budget holds
    /// (never the selected flow's, never an in-flight one's).
    fn enforce_budget(&mut self) {
        let keep = self.selected;
        let mut skipped = Vec::new();
        while self.body_bytes > self.budget {
            let Some(id) = self.body_order.pop_front() else {
                break;
            };
            let Some(&i) = self.index.get(&id) else {
                continue;
            };
            let entry = &mut self.entries[i];
            if !entry.flow.is_complete() || Some(i) == keep {
                skipped.push(id);
                continue;
            }
            let size = body_len(&entry.flow);
            if size == 0 {
                continue;
            }
            let mut light = Flow::clone(&entry.flow);
            light.request_body = Bytes::new();
            light.response_body = Bytes::new();
            entry.flow = Arc::new(light);
            entry.trimmed = true;
            self.body_bytes -= size.min(self.body_bytes);
        }
        for id in skipped.into_iter().rev() {
            self.body_order.push_front(id);
        }
    }
}

/// Indices of the entries that pass `filter`, in order.
///
/// A long list is split across the cores: re-filtering 100,000 flows by body or
/// header is a scan of ~130 MB, and halving it keeps typing in `/` responsive.
fn visible_in(filter: &Filter, entries: &[Entry]) -> Vec<usize> {
    const PER_THREAD_MIN: usize = 8_192;
    let keep = |base: usize, part: &[Entry]| -> Vec<usize> {
        part.iter()
            .enumerate()
            .filter(|(_, e)| filter.matches(&e.flow))
            .map(|(i, _)| base + i)
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(entries.len() / PER_THREAD_MIN)
        .max(1);
    if threads == 1 {
        return keep(0, entries);
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| scope.spawn(move || keep(n * chunk, part)))
            .collect();
        let mut out = Vec::new();
        for h in handles {
            // A panic in a worker is a bug in `matches`; surface it on this thread.
            match h.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::filter;
    use crate::flow::Direction;

    fn flow(n: u128, method: &str, body: usize) -> Flow {
        let mut f = Flow::new(Direction::Forward, method, "http://h/p", "h", "/p");
        f.id = Uuid::from_u128(n + 1);
        f.start_time = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(n as i64);
        f.response_body = Bytes::from(vec![b'x'; body]);
        f.end_time = Some(f.start_time);
        f
    }

    #[test]
    fn upsert_indexes_by_id_and_follows_the_newest() {
        let mut list = FlowList::default();
        assert!(list.upsert(Arc::new(flow(0, "GET", 0))));
        assert!(list.upsert(Arc::new(flow(1, "POST", 0))));
        assert!(!list.upsert(Arc::new(flow(0, "PUT", 0))));
        assert_eq!(list.len(), 2);
        assert_eq!(
            list.visible_entry(0).map(|e| e.flow.method.as_str()),
            Some("PUT")
        );
        assert_eq!(list.selected_pos(), Some(1));
        list.follow = false;
        list.upsert(Arc::new(flow(2, "GET", 0)));
        assert_eq!(list.selected_pos(), Some(1));
    }

    #[test]
    fn filter_hides_and_updates_reveal() {
        let mut list = FlowList::default();
        for n in 0..4 {
            list.upsert(Arc::new(flow(
                n,
                if n % 2 == 0 { "GET" } else { "POST" },
                0,
            )));
        }
        list.set_filter(filter::parse("~m POST").expect("parse"));
        assert_eq!(list.visible_len(), 2);
        list.upsert(Arc::new(flow(0, "POST", 0)));
        assert_eq!(list.visible_len(), 3);
        assert_eq!(list.visible_flows().len(), 3);
        list.set_filter(Filter::all());
        assert_eq!(list.visible_len(), 4);
    }

    #[test]
    fn refilter_across_threads_matches_one_thread() {
        let mut list = FlowList::new(usize::MAX);
        for n in 0..20_000 {
            list.upsert(Arc::new(flow(
                n,
                if n % 3 == 0 { "GET" } else { "POST" },
                0,
            )));
        }
        let f = filter::parse("~m GET").expect("parse");
        let one: Vec<usize> = (0..list.len())
            .filter(|&i| f.matches(&list.entries[i].flow))
            .collect();
        list.set_filter(f);
        assert_eq!(list.visible, one);
    }

    #[test]
    fn budget_drops_the_oldest_completed_bodies() {
        let mut list = FlowList::new(250);
        for n in 0..5 {
            list.upsert(Arc::new(flow(n, "GET", 100)));
        }
        assert!(list.body_bytes() <= 250, "{}", list.body_bytes());
        assert!(list.visible_entry(0).is_some_and(|e| e.trimmed));
        assert!(list.visible_entry(4).is_some_and(|e| !e.trimmed));
        // Down to nothing: only the selected (newest) flow keeps its body.
        list.set_budget(0);
        assert_eq!(list.body_bytes(), 100);
        assert!(list.selected_entry().is_some_and(|e| !e.trimmed));
        let mut pending = flow(9, "GET", 100);
        pending.end_time = None;
        list.upsert(Arc::new(pending));
        assert_eq!(list.body_bytes(), 200, "in-flight bodies are kept");
    }

    #[test]
    fn history_prepends_oldest_first_and_keeps_the_selection() {
        let mut list = FlowList::default();
        list.upsert(Arc::new(flow(10, "GET", 0)));
        list.upsert(Arc::new(flow(11, "GET", 0)));
        list.follow = false;
        list.step(-1);
        let sel = list.selected_entry().map(|e| e.flow.id);
        let page: Vec<Flow> = (5..10).rev().map(|n| flow(n, "POST", 0)).collect();
        assert_eq!(list.merge_history(page), 5);
        assert_eq!(list.selected_entry().map(|e| e.flow.id), sel);
        let times: Vec<_> = (0..list.len())
            .filter_map(|i| list.visible_entry(i).map(|e| e.flow.start_time))
            .collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(list.merge_history(vec![flow(5, "POST", 0)]), 0);
        assert_eq!(list.counts().iter().sum::<u64>(), 7);
    }

    #[test]
    fn totals_follow_updates_and_the_filter() {
        let llm = |f: &mut Flow, input: u64, cost: f64| {
            f.llm = Some(Arc::new(Analysis {
                usage: crate::llm::Usage {
                    input: Some(input),
                    ..crate::llm::Usage::default()
                },
                cost_usd: Some(cost),
                ..Analysis::default()
            }));
        };
        let mut list = FlowList::default();
        let mut a = flow(0, "POST", 0);
        llm(&mut a, 10, 0.5);
        let mut b = flow(1, "GET", 0);
        llm(&mut b, 5, 0.25);
        list.upsert(Arc::new(a.clone()));
        list.upsert(Arc::new(b));
        assert_eq!(list.visible_totals().input, 15);
        // A newer copy replaces the old figures instead of adding to them.
        llm(&mut a, 20, 1.0);
        list.upsert(Arc::new(a));
        assert_eq!(list.visible_totals(), list.sum_visible());
        assert_eq!(list.visible_totals().input, 25);
        list.set_filter(filter::parse("~m GET").expect("parse"));
        assert_eq!(list.visible_totals().input, 5);
        assert_eq!(list.visible_totals(), list.sum_visible());
        list.clear();
        assert_eq!(list.visible_totals(), Totals::default());
    }

    #[test]
    fn generation_moves_when_flows_complete_or_go() {
        let mut list = FlowList::default();
        let mut f = flow(0, "POST", 0);
        f.end_time = None;
        list.upsert(Arc::new(f.clone()));
        let g0 = list.generation();
        list.append_live(&f.id, b"abc");
        assert_eq!(list.generation(), g0, "live bytes are not a completion");
        assert!(list.analysed_log().1.is_empty());
        f.end_time = Some(f.start_time);
        f.llm = Some(Arc::new(Analysis::default()));
        list.complete(Arc::new(f.clone()));
        assert_eq!(list.analysed_log().1, [0]);
        let g1 = list.generation();
        assert!(g1 > g0);
        assert!(list.entry(&f.id).is_some());
        assert_eq!(list.merge_history(vec![flow(5, "GET", 0)]), 1);
        assert!(list.generation() > g1);
        let (epoch, log) = list.analysed_log();
        assert!(log.is_empty(), "a history page starts a new epoch");
        let g2 = list.generation();
        list.clear();
        assert!(list.generation() > g2);
        assert!(list.analysed_log().0 > epoch);
        assert!(list.entry(&f.id).is_none() && list.entries().is_empty());
    }

    #[test]
    fn live_bytes_grow_until_complete() {
        let mut list = FlowList::default();
        let mut f = flow(0, "POST", 0);
        f.end_time = None;
        list.upsert(Arc::new(f.clone()));
        list.append_live(&f.id, b"abc");
        assert_eq!(list.visible_entry(0).map(|e| e.live.len()), Some(3));
        f.end_time = Some(f.start_time);
        list.complete(Arc::new(f.clone()));
        list.append_live(&f.id, b"late");
        assert_eq!(list.visible_entry(0).map(|e| e.live.len()), Some(0));
    }
}
