//! Every key binding, in ONE table that drives the dispatch, the `?` help
//! overlay and the footer, so the three never disagree.
//!
//! Rows are in display order. A key press runs the first row whose context
//! holds the current one and whose keys contain the key. The help overlay
//! lists the rows that have help text; the footer joins the hints of the rows
//! whose hint context holds the current one.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::{Action, App, Focus, Input, Overlay};

/// Where the keys go, as a set (a row may apply in several).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx(u16);

impl Ctx {
    /// The flow table has focus.
    pub const LIST: Self = Self(1);
    /// The detail pane has focus.
    pub const DETAIL: Self = Self(2);
    /// The `?` overlay is open.
    pub const HELP: Self = Self(4);
    /// The curl overlay is open.
    pub const CURL: Self = Self(8);
    /// The `/` filter bar takes text.
    pub const FILTER: Self = Self(16);
    /// The body search bar takes text.
    pub const SEARCH: Self = Self(32);
    /// The sessions table.
    pub const SESSIONS: Self = Self(64);
    /// An open session.
    pub const SESSION: Self = Self(128);
    /// The diff of two requests.
    pub const DIFF: Self = Self(256);
    /// List or detail.
    pub const BROWSE: Self = Self(1 | 2);
    /// The sessions table, a session or a diff.
    pub const VIEWS: Self = Self(64 | 128 | 256);
    /// Any view without an overlay or a bar.
    pub const PANES: Self = Self::BROWSE.or(Self::VIEWS);
    /// Anywhere.
    pub const ALL: Self = Self(u16::MAX);
    /// Nowhere (a row without a footer hint).
    pub const NONE: Self = Self(0);

    const fn or(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// True when `self` includes `other`.
    pub fn holds(self, other: Self) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// The context the app is in now.
    pub fn of(app: &App) -> Self {
        match (app.input, &app.overlay, app.focus) {
            (Input::Filter, _, _) => Self::FILTER,
            (Input::Search, _, _) => Self::SEARCH,
            (_, Overlay::Help, _) => Self::HELP,
            (_, Overlay::Curl(_), _) => Self::CURL,
            (_, Overlay::None, Focus::List) => Self::LIST,
            (_, Overlay::None, Focus::Detail) => Self::DETAIL,
            (_, Overlay::None, Focus::Sessions) => Self::SESSIONS,
            (_, Overlay::None, Focus::Session) => Self::SESSION,
            (_, Overlay::None, Focus::Diff) => Self::DIFF,
        }
    }
}

/// One key a row answers to.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    /// This key, whatever the modifiers (`G` arrives with Shift).
    Code(KeyCode),
    /// This letter with Control held.
    Ctrl(char),
    /// Any key (text typed into a bar).
    Any,
}

impl Key {
    fn matches(self, key: &KeyEvent) -> bool {
        match self {
            Self::Code(c) => key.code == c,
            Self::Ctrl(c) => {
                key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(c)
            }
            Self::Any => true,
        }
    }
}

/// One row of the table.
pub struct Binding {
    /// Where the row applies.
    pub when: Ctx,
    /// The keys, as matched.
    pub keys: &'static [Key],
    /// The action for the key pressed.
    pub action: fn(KeyEvent) -> Action,
    /// The keys as the help overlay shows them.
    pub label: &'static str,
    /// What the row does, for the help overlay (empty: not listed).
    pub help: &'static str,
    /// Where the footer shows `hint` (within `when`).
    pub hint_in: Ctx,
    /// The footer's short form.
    pub hint: &'static str,
}

const fn ch(c: char) -> Key {
    Key::Code(KeyCode::Char(c))
}

const fn code(c: KeyCode) -> Key {
    Key::Code(c)
}

/// A row without help text or footer hint.
const fn quiet(when: Ctx, keys: &'static [Key], action: fn(KeyEvent) -> Action) -> Binding {
    Binding {
        when,
        keys,
        action,
        label: "",
        help: "",
        hint_in: Ctx::NONE,
        hint: "",
    }
}

/// A row shown in the footer of `when`, not in the help.
const fn hinted(
    when: Ctx,
    keys: &'static [Key],
    action: fn(KeyEvent) -> Action,
    hint: &'static str,
) -> Binding {
    Binding {
        when,
        keys,
        action,
        label: "",
        help: "",
        hint_in: when,
        hint,
    }
}

fn is(key: &KeyEvent, c: char) -> bool {
    key.code == KeyCode::Char(c)
}

const MOVE: &[Key] = &[ch('j'), code(KeyCode::Down), ch('k'), code(KeyCode::Up)];
const BACK: &[Key] = &[code(KeyCode::Esc), ch('q')];
const CLOSE: &[Key] = &[code(KeyCode::Esc), ch('q'), ch('?')];

fn up_down(k: KeyEvent) -> Action {
    if is(&k, 'k') || k.code == KeyCode::Up {
        Action::Up
    } else {
        Action::Down
    }
}

/// The table. Order matters twice: the first match wins, and rows display in order.
pub static BINDINGS: &[Binding] = &[
    quiet(Ctx::ALL, &[Key::Ctrl('c')], |_| Action::Quit),
    hinted(
        Ctx::FILTER,
        &[code(KeyCode::Enter)],
        |_| Action::FilterSubmit,
        "Enter keep filter",
    ),
    hinted(
        Ctx::FILTER,
        &[code(KeyCode::Esc)],
        |_| Action::FilterCancel,
        "Esc cancel",
    ),
    hinted(
        Ctx::FILTER,
        &[Key::Any],
        |k| Action::FilterKey(k.into()),
        "~d ~u ~m ~c ~t ~h ~b ~e ~type ! & | ( )",
    ),
    hinted(
        Ctx::SEARCH,
        &[code(KeyCode::Enter)],
        |_| Action::SearchSubmit,
        "Enter search",
    ),
    hinted(
        Ctx::SEARCH,
        &[code(KeyCode::Esc)],
        |_| Action::SearchCancel,
        "Esc cancel",
    ),
    quiet(Ctx::SEARCH, &[Key::Any], |k| Action::SearchKey(k.into())),
    hinted(Ctx::HELP, CLOSE, |_| Action::Back, "Esc/?/q close help"),
    hinted(Ctx::HELP, MOVE, up_down, "j/k scroll"),
    quiet(
        Ctx::HELP,
        &[code(KeyCode::PageUp), code(KeyCode::PageDown), ch(' ')],
        |k| {
            if k.code == KeyCode::PageUp {
                Action::PageUp
            } else {
                Action::PageDown
            }
        },
    ),
    hinted(
        Ctx::CURL,
        CLOSE,
        |_| Action::Back,
        "Esc/q close · copied to the clipboard (OSC 52)",
    ),
    Binding {
        when: Ctx::LIST.or(Ctx::SESSIONS).or(Ctx::SESSION),
        keys: MOVE,
        action: up_down,
        label: "j k ↓ ↑",
        help: "move in the list (flows, sessions, turns) / scroll the body or diff",
        hint_in: Ctx::LIST.or(Ctx::SESSIONS).or(Ctx::SESSION),
        hint: "j/k move",
    },
    hinted(Ctx::DETAIL.or(Ctx::DIFF), MOVE, up_down, "j/k scroll"),
    Binding {
        when: Ctx::PANES,
        keys: &[ch('g'), code(KeyCode::Home), ch('G'), code(KeyCode::End)],
        action: |k| {
            if is(&k, 'g') || k.code == KeyCode::Home {
                Action::Top
            } else {
                Action::Bottom
            }
        },
        label: "g G",
        help: "first / last",
        hint_in: Ctx::NONE,
        hint: "",
    },
    Binding {
        when: Ctx::PANES,
        keys: &[code(KeyCode::PageUp), code(KeyCode::PageDown)],
        action: |k| {
            if k.code == KeyCode::PageUp {
                Action::PageUp
            } else {
                Action::PageDown
            }
        },
        label: "PgUp PgDn",
        help: "page up / down (Space too, in a body or a diff)",
        hint_in: Ctx::NONE,
        hint: "",
    },
    quiet(Ctx::DETAIL.or(Ctx::DIFF), &[ch(' ')], |_| Action::PageDown),
    Binding {
        when: Ctx::LIST.or(Ctx::SESSION),
        keys: &[ch(' ')],
        action: |_| Action::ToggleMark,
        label: "Space",
        help: "mark the flow (in a session: the turn's) for d; two at most",
        hint_in: Ctx::SESSION,
        hint: "Space mark",
    },
    Binding {
        when: Ctx::BROWSE,
        keys: &[code(KeyCode::Enter)],
        action: |_| Action::Open,
        label: "Enter",
        help: "open the flow, the session; on a turn: diff its request with the previous one",
        hint_in: Ctx::LIST,
        hint: "Enter open",
    },
    hinted(
        Ctx::SESSIONS,
        &[code(KeyCode::Enter)],
        |_| Action::Open,
        "Enter open",
    ),
    hinted(
        Ctx::SESSION,
        &[code(KeyCode::Enter)],
        |_| Action::Open,
        "Enter diff with the previous request",
    ),
    Binding {
        when: Ctx::LIST,
        keys: BACK,
        action: |_| Action::Back,
        label: "Esc q",
        help: "back (close help, detail, clear the filter)",
        hint_in: Ctx::NONE,
        hint: "",
    },
    Binding {
        when: Ctx::DETAIL,
        keys: &[code(KeyCode::Tab), code(KeyCode::BackTab)],
        action: |k| {
            if k.code == KeyCode::Tab {
                Action::NextTab
            } else {
                Action::PrevTab
            }
        },
        label: "Tab S-Tab",
        help: "next / previous detail tab (in a session: conversation)",
        hint_in: Ctx::DETAIL,
        hint: "Tab tabs",
    },
    hinted(
        Ctx::SESSION,
        &[code(KeyCode::Tab), code(KeyCode::BackTab)],
        |k| {
            if k.code == KeyCode::Tab {
                Action::NextTab
            } else {
                Action::PrevTab
            }
        },
        "Tab conversation",
    ),
    Binding {
        when: Ctx::DETAIL,
        keys: &[ch('m')],
        action: |_| Action::CycleMode,
        label: "m",
        help: "cycle body view: json, sse, text, hex",
        hint_in: Ctx::DETAIL,
        hint: "m view",
    },
    hinted(Ctx::LIST, &[ch('/')], |_| Action::StartFilter, "/ filter"),
    Binding {
        when: Ctx::BROWSE,
        keys: &[ch('t')],
        action: |_| Action::ToggleLlmColumns,
        label: "t",
        help: "show / hide the LLM columns: model, tokens, cost, TTFT",
        hint_in: Ctx::LIST,
        hint: "t tokens",
    },
    Binding {
        when: Ctx::BROWSE,
        keys: &[ch('F')],
        action: |_| Action::ToggleFollow,
        label: "F",
        help: "follow: keep the newest flow in view",
        hint_in: Ctx::LIST,
        hint: "F follow",
    },
    Binding {
        when: Ctx::DETAIL,
        keys: &[ch('/')],
        action: |_| Action::StartSearch,
        label: "/",
        help: "filter the list (in a body: search)",
        hint_in: Ctx::DETAIL,
        hint: "/ search",
    },
    Binding {
        when: Ctx::DETAIL,
        keys: &[ch('n'), ch('N')],
        action: |k| {
            if is(&k, 'n') {
                Action::NextHit
            } else {
                Action::PrevHit
            }
        },
        label: "n N",
        help: "next / previous search match (in a diff: change)",
        hint_in: Ctx::DETAIL,
        hint: "n/N match",
    },
    hinted(
        Ctx::DIFF,
        &[ch('n'), ch('N')],
        |k| {
            if is(&k, 'n') {
                Action::NextHit
            } else {
                Action::PrevHit
            }
        },
        "n/N change",
    ),
    Binding {
        when: Ctx::DIFF,
        keys: &[code(KeyCode::Left), ch('h'), code(KeyCode::Right), ch('l')],
        action: |k| {
            if is(&k, 'h') || k.code == KeyCode::Left {
                Action::ScrollLeft
            } else {
                Action::ScrollRight
            }
        },
        label: "← → h l",
        help: "scroll a diff sideways",
        hint_in: Ctx::DIFF,
        hint: "←/→ sideways",
    },
    Binding {
        when: Ctx::BROWSE,
        keys: &[ch('s')],
        action: |_| Action::OpenSessions,
        label: "s",
        help: "sessions: conversations, turns, cache verdicts, timeline, rate limits",
        hint_in: Ctx::LIST,
        hint: "s sessions",
    },
    Binding {
        when: Ctx::BROWSE.or(Ctx::SESSIONS).or(Ctx::SESSION),
        keys: &[ch('d')],
        action: |_| Action::DiffMarked,
        label: "d",
        help: "diff the request bodies of the two marked flows (or the marked and the selected)",
        hint_in: Ctx::SESSION,
        hint: "d diff",
    },
    Binding {
        when: Ctx::BROWSE,
        keys: &[ch('y')],
        action: |_| Action::CopyCurl,
        label: "y",
        help: "copy the flow as a curl command (OSC 52)",
        hint_in: Ctx::BROWSE,
        hint: "y curl",
    },
    Binding {
        when: Ctx::BROWSE,
        keys: &[ch('b')],
        action: |_| Action::SaveBody,
        label: "b",
        help: "save the body to a file",
        hint_in: Ctx::DETAIL,
        hint: "b save",
    },
    Binding {
        when: Ctx::BROWSE,
        keys: &[ch('w')],
        action: |_| Action::ExportHar,
        label: "w",
        help: "export the filtered flows as HAR 1.2",
        hint_in: Ctx::LIST,
        hint: "w HAR",
    },
    Binding {
        when: Ctx::BROWSE,
        keys: &[ch('c')],
        action: |_| Action::Clear,
        label: "c",
        help: "clear the list",
        hint_in: Ctx::LIST,
        hint: "c clear",
    },
    hinted(
        Ctx::DETAIL.or(Ctx::VIEWS),
        BACK,
        |_| Action::Back,
        "Esc back",
    ),
    Binding {
        when: Ctx::PANES,
        keys: &[ch('?')],
        action: |_| Action::ToggleHelp,
        label: "?",
        help: "this help",
        hint_in: Ctx::PANES,
        hint: "? help",
    },
    Binding {
        when: Ctx::PANES.or(Ctx::HELP).or(Ctx::CURL),
        keys: &[ch('Q')],
        action: |_| Action::Quit,
        label: "Q Ctrl-C",
        help: "quit",
        hint_in: Ctx::LIST.or(Ctx::HELP).or(Ctx::SESSIONS),
        hint: "Q quit",
    },
];

/// The action for a key press in the current state, if any.
pub fn action(app: &App, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctx = Ctx::of(app);
    BINDINGS
        .iter()
        .find(|b| b.when.holds(ctx) && b.keys.iter().any(|k| k.matches(&key)))
        .map(|b| (b.action)(key))
}

/// The help overlay's rows: (keys, what they do).
pub fn help() -> impl Iterator<Item = (&'static str, &'static str)> {
    BINDINGS
        .iter()
        .filter(|b| !b.help.is_empty())
        .map(|b| (b.label, b.help))
}

/// The footer hints for the current state.
pub fn hints(app: &App) -> String {
    let ctx = Ctx::of(app);
    let parts: Vec<&str> = BINDINGS
        .iter()
        .filter(|b| !b.hint.is_empty() && b.when.holds(ctx) && b.hint_in.holds(ctx))
        .map(|b| b.hint)
        .collect();
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXTS: [Ctx; 9] = [
        Ctx::LIST,
        Ctx::DETAIL,
        Ctx::HELP,
        Ctx::CURL,
        Ctx::FILTER,
        Ctx::SEARCH,
        Ctx::SESSIONS,
        Ctx::SESSION,
        Ctx::DIFF,
    ];

    #[test]
    fn no_row_is_shadowed_by_an_earlier_one() {
        for ctx in CONTEXTS {
            let rows: Vec<&Binding> = BINDINGS.iter().filter(|b| b.when.holds(ctx)).collect();
            for (i, later) in rows.iter().enumerate() {
                for key in later.keys {
                    let Key::Code(c) = key else { continue };
                    let ev = KeyEvent::new(*c, KeyModifiers::NONE);
                    let first = rows
                        .iter()
                        .position(|b| b.keys.iter().any(|k| k.matches(&ev)));
                    assert_eq!(
                        first,
                        Some(i),
                        "{c:?} in {ctx:?} is taken by an earlier row"
                    );
                }
            }
        }
    }

    #[test]
    fn every_hint_and_help_line_belongs_to_a_reachable_row() {
        for b in BINDINGS {
            assert!(
                b.hint.is_empty()
                    || CONTEXTS
                        .iter()
                        .any(|c| b.hint_in.holds(*c) && b.when.holds(*c)),
                "{}",
                b.hint
            );
            assert_eq!(b.help.is_empty(), b.label.is_empty());
        }
        assert_eq!(help().count(), 21);
    }
}
