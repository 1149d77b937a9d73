//! Keys to actions. Which keys apply depends on what has focus; the same
//! table feeds the help overlay and the footer, so they never disagree.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::{Action, App, Focus, Input, Overlay};

/// Every binding, for the `?` overlay: (keys, what they do).
pub const BINDINGS: &[(&str, &str)] = &[
    ("j k ↓ ↑", "move in the list / scroll the body"),
    ("g G", "first / last"),
    ("PgUp PgDn", "page up / down"),
    ("Enter", "open the selected flow"),
    ("Esc q", "back (close help, detail, clear the filter)"),
    ("Tab S-Tab", "next / previous detail tab"),
    ("m", "cycle body view: json, sse, text, hex"),
    ("F", "follow: keep the newest flow in view"),
    ("/", "filter the list (in a body: search)"),
    ("n N", "next / previous search match"),
    ("y", "copy the flow as a curl command (OSC 52)"),
    ("b", "save the body to a file"),
    ("w", "export the filtered flows as HAR 1.2"),
    ("c", "clear the list"),
    ("?", "this help"),
    ("Q Ctrl-C", "quit"),
];

/// The footer hints for the current state.
pub fn hints(app: &App) -> &'static str {
    match (app.input, &app.overlay, app.focus) {
        (Input::Filter, _, _) => "Enter keep filter · Esc cancel · ~d ~u ~m ~c ~t ~h ~b ~e ~type ! & | ( )",
        (Input::Search, _, _) => "Enter search · Esc cancel",
        (_, Overlay::Help, _) => "Esc/?/q close help · Q quit",
        (_, Overlay::Curl(_), _) => "Esc/q close · copied to the clipboard (OSC 52)",
        (_, _, Focus::List) => "j/k move · Enter open · / filter · F follow · y curl · b save · w HAR · c clear · ? help · Q quit",
        (_, _, Focus::Detail) => "j/k scroll · Tab tabs · m view · / search · n/N match · y curl · b save · Esc back · ? help",
    }
}

/// The action for a key press in the current state, if any.
pub fn action(app: &App, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    match app.input {
        Input::Filter => {
            return Some(match key.code {
                KeyCode::Enter => Action::FilterSubmit,
                KeyCode::Esc => Action::FilterCancel,
                _ => Action::FilterKey(key.into()),
            })
        }
        Input::Search => {
            return Some(match key.code {
                KeyCode::Enter => Action::SearchSubmit,
                KeyCode::Esc => Action::SearchCancel,
                _ => Action::SearchKey(key.into()),
            })
        }
        Input::None => {}
    }
    if app.overlay != Overlay::None {
        return match key.code {
            KeyCode::Esc | KeyCode::Char('q' | '?') => Some(Action::Back),
            KeyCode::Char('Q') => Some(Action::Quit),
            _ => None,
        };
    }
    let detail = app.focus == Focus::Detail;
    Some(match key.code {
        KeyCode::Char('j') | KeyCode::Down => Action::Down,
        KeyCode::Char('k') | KeyCode::Up => Action::Up,
        KeyCode::Char('g') | KeyCode::Home => Action::Top,
        KeyCode::Char('G') | KeyCode::End => Action::Bottom,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown | KeyCode::Char(' ') => Action::PageDown,
        KeyCode::Enter => Action::Open,
        KeyCode::Esc | KeyCode::Char('q') => Action::Back,
        KeyCode::Tab if detail => Action::NextTab,
        KeyCode::BackTab if detail => Action::PrevTab,
        KeyCode::Char('F') => Action::ToggleFollow,
        KeyCode::Char('/') if detail => Action::StartSearch,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('n') if detail => Action::NextHit,
        KeyCode::Char('N') if detail => Action::PrevHit,
        KeyCode::Char('m') if detail => Action::CycleMode,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Char('y') => Action::CopyCurl,
        KeyCode::Char('b') => Action::SaveBody,
        KeyCode::Char('w') => Action::ExportHar,
        KeyCode::Char('c') => Action::Clear,
        KeyCode::Char('Q') => Action::Quit,
        _ => return None,
    })
}
