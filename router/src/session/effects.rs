//! What a text statement does to the session's state, from its
//! classification ([`effects`]), and `ROW_COUNT()` / `FOUND_ROWS()`
//! answered from the values read back when their connection left
//! ([`answer_row_info`]). Pure: no I/O, no session.

use crate::classify::{first_word, Classified};

use super::state::{Effects, SessionState};

/// What a statement does to the session, from its classification.
pub(super) fn effects<'c>(class: &'c Classified, sql: &str, sticky: bool) -> Effects<'c> {
    let scan = class.scan.as_deref();
    let word = first_word(sql);
    let is = |w: &str| word.eq_ignore_ascii_case(w);
    let tables = &class.tables[..];
    Effects {
        assigns: class.assigns(),
        creates_temp: if class.session.temp_tables && is("CREATE") {
            &tables[..tables.len().min(1)]
        } else {
            &[]
        },
        drops: if is("DROP") { tables } else { &[] },
        prepare: scan.and_then(|s| s.prepare.as_ref()),
        prepared_assigns: scan.and_then(|s| s.body.as_deref()).map(|b| &b.assigns[..]),
        locks: scan.map(|s| &s.locks),
        global_lock: scan.and_then(|s| s.global_lock),
        found_rows_calc: class.found_rows_calc,
        last_insert_id: class.last_insert_id,
        opaque: class.opaque,
        several: class.multi || is("CALL"),
        protocol_prepare: false,
        sticky,
    }
}

/// `SELECT ROW_COUNT()` / `SELECT FOUND_ROWS()` (alone, an alias allowed)
/// answered from what was read back when their connection left: the
/// statement to run instead, with the same column name. `None`: another
/// shape, or nothing was read back.
pub(super) fn answer_row_info(sql: &str, state: &SessionState) -> Option<String> {
    let c = state.last.captured?;
    let body = crate::classify::skip_comments_and_space(sql)
        .trim()
        .trim_end_matches(';')
        .trim();
    let words: Vec<&str> = body.split_ascii_whitespace().collect();
    let (call, alias) = match words.as_slice() {
        [_, call] => (*call, None),
        [_, call, as_, alias] if as_.eq_ignore_ascii_case("AS") => (*call, Some(*alias)),
        _ => return None,
    };
    if !words[0].eq_ignore_ascii_case("SELECT") {
        return None;
    }
    let squeezed = call.to_ascii_uppercase();
    let value = match squeezed.as_str() {
        "ROW_COUNT()" => c.row_count.to_string(),
        "FOUND_ROWS()" => c.found_rows.to_string(),
        _ => return None,
    };
    let name = alias
        .map(|a| a.trim_matches('`').to_string())
        .unwrap_or_else(|| call.to_string());
    if name.contains('`') {
        return None;
    }
    Some(format!("SELECT CAST({value} AS SIGNED) AS `{name}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::state::{Captured, Last};

    #[test]
    fn row_info_is_answered_only_in_its_plain_shapes() {
        let mut s = SessionState::default();
        assert_eq!(answer_row_info("SELECT ROW_COUNT()", &s), None);
        s.last = Last {
            on: None,
            captured: Some(Captured {
                row_count: 3,
                found_rows: 7,
            }),
        };
        assert_eq!(
            answer_row_info("select row_count();", &s).as_deref(),
            Some("SELECT CAST(3 AS SIGNED) AS `row_count()`")
        );
        assert_eq!(
            answer_row_info("SELECT FOUND_ROWS() AS n", &s).as_deref(),
            Some("SELECT CAST(7 AS SIGNED) AS `n`")
        );
        assert_eq!(answer_row_info("SELECT ROW_COUNT() + 1", &s), None);
        assert_eq!(
            answer_row_info("INSERT INTO t VALUES (ROW_COUNT())", &s),
            None
        );
    }
}
