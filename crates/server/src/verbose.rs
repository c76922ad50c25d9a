//! The article's per-client events, shown with `-v`.

/// The longest preview of received text that `-v` prints.
pub const PREVIEW_CHARS: usize = 80;

/// `Some(text)` when `data` is printable UTF-8, cut to [`PREVIEW_CHARS`]
/// characters (with `…` when cut); `None` for binary data. A trailing line
/// ending is dropped so `-v` output stays one line per event.
pub fn printable_preview(data: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(data).ok()?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return None;
    }
    let mut out: String = text.chars().take(PREVIEW_CHARS).collect();
    if text.chars().nth(PREVIEW_CHARS).is_some() {
        out.push('…');
    }
    Some(out)
}

/// Log that `n` bytes arrived from `peer`, with a preview when printable.
macro_rules! log_received {
    ($peer:expr, $data:expr) => {
        if tracing::enabled!(tracing::Level::INFO) {
            let data: &[u8] = $data;
            match $crate::verbose::printable_preview(data) {
                Some(text) => {
                    tracing::info!("{} bytes received from {}: {:?}", data.len(), $peer, text)
                }
                None => tracing::info!("{} bytes received from {} (binary)", data.len(), $peer),
            }
        }
    };
}
pub(crate) use log_received;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_is_shown_without_its_newline() {
        assert_eq!(printable_preview(b"hello\r\n").as_deref(), Some("hello"));
    }

    #[test]
    fn long_text_is_cut_to_80_characters() {
        let long = "é".repeat(200);
        let p = printable_preview(long.as_bytes()).unwrap();
        assert_eq!(p.chars().count(), PREVIEW_CHARS + 1);
        assert!(p.ends_with('…'));
    }

    #[test]
    fn binary_is_not_shown() {
        assert_eq!(printable_preview(&[0, 1, 2, 255]), None);
        assert_eq!(printable_preview(b"a\x00b"), None);
    }
}
