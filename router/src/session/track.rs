//! What the server's session trackers say, and what the client sees of
//! them: pure.
//!
//! Every backend connection runs with the router's trackers on
//! ([`ROUTER_TRACKERS`]), as MySQL Router's connection sharing does, so
//! each OK packet says what the statement changed: system variables (with
//! their new values), the schema, the transaction state (open, tables
//! locked) and the next transaction's characteristics, whether any other
//! session state changed, and the GTIDs of its writes. [`Tracked`] is that,
//! read from one OK packet.
//!
//! The client asked for none of this: it sees OK packets as its own
//! `session_track_*` settings would make them ([`ClientTrackers`],
//! defaulting to MySQL's defaults and following the client's `SET`s),
//! rebuilt by [`client_ok`].

use bytes::{Bytes, BytesMut};
use causeway_wire::session_state::SessionStateEntry;
use causeway_wire::{CapabilityFlags, CodecError, OkPacket, StatusFlags};

use super::replay::GtidTrack;

/// The router's trackers, set on every backend connection after login (and
/// after a reset); `session_track_gtids` is set with them.
pub const ROUTER_TRACKERS: &str = "session_track_schema = ON, session_track_state_change = ON, \
     session_track_system_variables = '*', session_track_transaction_info = CHARACTERISTICS";

/// Variables the tracker reports that are not the session's settings:
/// `statement_id` changes with every statement.
const NOT_SETTINGS: &[&[u8]] = &[b"statement_id"];

/// The transaction-state tracker's report (`T_____S_`, `_______L`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxnState {
    /// A transaction is open (explicit `T` or implicit `I`).
    pub open: bool,
    /// `LOCK TABLES` is in force (`L`).
    pub locked_tables: bool,
}

impl TxnState {
    /// Parses the 8 characters.
    pub fn parse(s: &[u8]) -> TxnState {
        TxnState {
            open: matches!(s.first(), Some(b'T' | b'I')),
            locked_tables: s.get(7) == Some(&b'L'),
        }
    }
}

/// What the trackers of one response said (several OK packets of one
/// response are folded with [`Tracked::fold`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracked {
    /// The state-change tracker fired (any session state changed).
    pub state_changed: bool,
    /// The new default schema.
    pub schema: Option<Bytes>,
    /// System variables set, lowercase names, in order (without
    /// `statement_id`).
    pub vars: Vec<(Bytes, Bytes)>,
    /// The transaction state, when it changed.
    pub txn: Option<TxnState>,
    /// The next transaction's characteristics, when they changed (empty:
    /// none).
    pub characteristics: Option<Bytes>,
    /// The GTID set text of the statement's writes.
    pub gtids: Option<Bytes>,
}

impl Tracked {
    /// Reads the session-state entries of `ok`.
    pub fn read(ok: &OkPacket) -> Result<Tracked, CodecError> {
        let mut t = Tracked::default();
        if !ok.status.contains(StatusFlags::SESSION_STATE_CHANGED) {
            return Ok(t);
        }
        for e in ok.session_state() {
            match e? {
                SessionStateEntry::SystemVariable { name, value } => {
                    if !NOT_SETTINGS.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                        t.vars.push((
                            Bytes::copy_from_slice(&name.to_ascii_lowercase()),
                            Bytes::copy_from_slice(value),
                        ));
                    }
                }
                SessionStateEntry::Schema(s) => t.schema = Some(Bytes::copy_from_slice(s)),
                SessionStateEntry::StateChange(b) => t.state_changed |= b,
                SessionStateEntry::Gtids(g) => t.gtids = Some(Bytes::copy_from_slice(g)),
                SessionStateEntry::TransactionCharacteristics(c) => {
                    t.characteristics = Some(Bytes::copy_from_slice(c));
                }
                SessionStateEntry::TransactionState(s) => t.txn = Some(TxnState::parse(s)),
                SessionStateEntry::Unknown { .. } => t.state_changed = true,
            }
        }
        Ok(t)
    }

    /// Adds what a later OK packet of the same response said.
    pub fn fold(&mut self, later: Tracked) {
        self.state_changed |= later.state_changed;
        if later.schema.is_some() {
            self.schema = later.schema;
        }
        self.vars.extend(later.vars);
        if later.txn.is_some() {
            self.txn = later.txn;
        }
        if later.characteristics.is_some() {
            self.characteristics = later.characteristics;
        }
        match (&mut self.gtids, later.gtids) {
            (Some(a), Some(b)) => {
                let mut joined = BytesMut::from(&a[..]);
                joined.extend_from_slice(b",");
                joined.extend_from_slice(&b);
                *a = joined.freeze();
            }
            (a @ None, b) => *a = b,
            _ => {}
        }
    }

    /// Nothing was reported.
    pub fn is_empty(&self) -> bool {
        *self == Tracked::default()
    }
}

/// Which system variables a client tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarList {
    /// `*`.
    All,
    /// These (lowercase).
    Names(Vec<Bytes>),
}

/// `session_track_transaction_info` of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnInfo {
    /// `OFF`.
    Off,
    /// `STATE`.
    State,
    /// `CHARACTERISTICS`.
    Characteristics,
}

/// The client's own `session_track_*` settings: what its OK packets carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTrackers {
    /// `session_track_schema`.
    pub schema: bool,
    /// `session_track_state_change`.
    pub state_change: bool,
    /// `session_track_system_variables`.
    pub vars: VarList,
    /// `session_track_transaction_info`.
    pub txn: TxnInfo,
    /// `session_track_gtids`.
    pub gtids: GtidTrack,
}

impl Default for ClientTrackers {
    /// MySQL's defaults.
    fn default() -> Self {
        ClientTrackers {
            schema: true,
            state_change: false,
            vars: VarList::Names(
                [
                    "time_zone",
                    "autocommit",
                    "character_set_client",
                    "character_set_results",
                    "character_set_connection",
                ]
                .iter()
                .map(|n| Bytes::from_static(n.as_bytes()))
                .collect(),
            ),
            txn: TxnInfo::Off,
            gtids: GtidTrack::Off,
        }
    }
}

fn on(value: &[u8]) -> bool {
    matches!(
        value.to_ascii_uppercase().as_slice(),
        b"ON" | b"1" | b"TRUE"
    )
}

impl ClientTrackers {
    /// A tracked variable changed: when it is one of the `session_track_*`
    /// settings, the client's own view follows and true is returned (the
    /// router then puts its trackers back on the connection).
    pub fn set(&mut self, name: &[u8], value: &[u8]) -> bool {
        match name {
            b"session_track_schema" => self.schema = on(value),
            b"session_track_state_change" => self.state_change = on(value),
            b"session_track_system_variables" => {
                let names: Vec<Bytes> = value
                    .split(|&b| b == b',')
                    .map(|n| n.trim_ascii().to_ascii_lowercase())
                    .filter(|n| !n.is_empty())
                    .map(Bytes::from)
                    .collect();
                self.vars = if names.iter().any(|n| &n[..] == b"*") {
                    VarList::All
                } else {
                    VarList::Names(names)
                };
            }
            b"session_track_transaction_info" => {
                self.txn = match value.to_ascii_uppercase().as_slice() {
                    b"STATE" | b"1" => TxnInfo::State,
                    b"CHARACTERISTICS" | b"2" => TxnInfo::Characteristics,
                    _ => TxnInfo::Off,
                }
            }
            b"session_track_gtids" => self.gtids = GtidTrack::parse(value).unwrap_or_default(),
            _ => return false,
        }
        true
    }

    fn keeps(&self, e: &SessionStateEntry<'_>) -> bool {
        match e {
            SessionStateEntry::SystemVariable { name, .. } => match &self.vars {
                VarList::All => true,
                VarList::Names(list) => list.iter().any(|n| n.eq_ignore_ascii_case(name)),
            },
            SessionStateEntry::Schema(_) => self.schema,
            SessionStateEntry::StateChange(_) => self.state_change,
            SessionStateEntry::Gtids(_) => self.gtids != GtidTrack::Off,
            SessionStateEntry::TransactionCharacteristics(_) => {
                self.txn == TxnInfo::Characteristics
            }
            SessionStateEntry::TransactionState(_) => self.txn != TxnInfo::Off,
            SessionStateEntry::Unknown { .. } => true,
        }
    }
}

/// The OK packet the client gets for a backend's `payload`, when it
/// differs: session state the client does not track removed (the status
/// flag with it), re-encoded for the client's capabilities. `None`: forward
/// the packet as it is.
pub fn client_ok(
    ok: &OkPacket,
    payload: &Bytes,
    backend: CapabilityFlags,
    client: CapabilityFlags,
    view: &ClientTrackers,
) -> Result<Option<Bytes>, CodecError> {
    let client_tracks = client.contains(CapabilityFlags::SESSION_TRACK);
    let changed = ok.status.contains(StatusFlags::SESSION_STATE_CHANGED);
    if client_tracks == backend.contains(CapabilityFlags::SESSION_TRACK) && !changed {
        return Ok(None);
    }
    let mut kept = BytesMut::new();
    let mut dropped = false;
    if client_tracks && changed {
        for e in ok.session_state() {
            let e = e?;
            if view.keeps(&e) {
                e.encode(&mut kept);
            } else {
                dropped = true;
            }
        }
        if !dropped && client_tracks == backend.contains(CapabilityFlags::SESSION_TRACK) {
            return Ok(None);
        }
    }
    let mut out = ok.clone();
    out.session_state = kept.freeze();
    out.status.set(
        StatusFlags::SESSION_STATE_CHANGED,
        !out.session_state.is_empty(),
    );
    let mut buf = BytesMut::with_capacity(payload.len());
    out.encode(client, &mut buf);
    Ok(Some(buf.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACK: CapabilityFlags =
        CapabilityFlags::PROTOCOL_41.union(CapabilityFlags::SESSION_TRACK);

    fn ok_with(entries: &[SessionStateEntry<'_>]) -> (OkPacket, Bytes) {
        let mut state = BytesMut::new();
        for e in entries {
            e.encode(&mut state);
        }
        let ok = OkPacket {
            affected_rows: 3,
            status: StatusFlags::AUTOCOMMIT | StatusFlags::SESSION_STATE_CHANGED,
            session_state: state.freeze(),
            ..OkPacket::default()
        };
        let mut buf = BytesMut::new();
        ok.encode(TRACK, &mut buf);
        let payload = buf.freeze();
        (OkPacket::decode(&payload, TRACK).unwrap(), payload)
    }

    #[test]
    fn tracked_reads_every_tracker_and_skips_statement_id() {
        let (ok, _) = ok_with(&[
            SessionStateEntry::SystemVariable {
                name: b"SQL_MODE",
                value: b"ANSI",
            },
            SessionStateEntry::SystemVariable {
                name: b"statement_id",
                value: b"7",
            },
            SessionStateEntry::Schema(b"app"),
            SessionStateEntry::StateChange(true),
            SessionStateEntry::Gtids(b"u:1"),
            SessionStateEntry::TransactionCharacteristics(b""),
            SessionStateEntry::TransactionState(b"_______L"),
        ]);
        let t = Tracked::read(&ok).unwrap();
        assert_eq!(t.vars, vec![(Bytes::from("sql_mode"), Bytes::from("ANSI"))]);
        assert_eq!(t.schema.as_deref(), Some(&b"app"[..]));
        assert!(t.state_changed);
        assert_eq!(t.gtids.as_deref(), Some(&b"u:1"[..]));
        assert_eq!(t.characteristics.as_deref(), Some(&b""[..]));
        assert_eq!(
            t.txn,
            Some(TxnState {
                open: false,
                locked_tables: true
            })
        );
        let mut folded = t.clone();
        folded.fold(Tracked {
            gtids: Some("u:2".into()),
            txn: Some(TxnState::parse(b"T_______")),
            ..Tracked::default()
        });
        assert_eq!(folded.gtids.as_deref(), Some(&b"u:1,u:2"[..]));
        assert!(folded.txn.unwrap().open);
    }

    #[test]
    fn clients_see_only_what_their_settings_track() {
        let (ok, payload) = ok_with(&[
            SessionStateEntry::SystemVariable {
                name: b"sql_mode",
                value: b"ANSI",
            },
            SessionStateEntry::SystemVariable {
                name: b"time_zone",
                value: b"+01:00",
            },
            SessionStateEntry::SystemVariable {
                name: b"statement_id",
                value: b"7",
            },
            SessionStateEntry::StateChange(true),
            SessionStateEntry::TransactionState(b"T_______"),
        ]);
        let mut view = ClientTrackers::default();
        let out = client_ok(&ok, &payload, TRACK, TRACK, &view)
            .unwrap()
            .unwrap();
        let seen = OkPacket::decode(&out, TRACK).unwrap();
        let entries: Vec<_> = seen.session_state().map(Result::unwrap).collect();
        assert_eq!(
            entries,
            [SessionStateEntry::SystemVariable {
                name: b"time_zone",
                value: b"+01:00"
            }]
        );
        assert_eq!(seen.affected_rows, 3);
        // Nothing tracked: no state, no flag.
        view.set(b"session_track_system_variables", b"");
        let out = client_ok(&ok, &payload, TRACK, TRACK, &view)
            .unwrap()
            .unwrap();
        let seen = OkPacket::decode(&out, TRACK).unwrap();
        assert!(!seen.status.contains(StatusFlags::SESSION_STATE_CHANGED));
        assert!(seen.session_state.is_empty());
        // Everything tracked: forwarded as it is.
        for (n, v) in [
            (&b"session_track_system_variables"[..], &b"*"[..]),
            (b"session_track_state_change", b"ON"),
            (b"session_track_transaction_info", b"STATE"),
        ] {
            assert!(view.set(n, v));
        }
        assert_eq!(client_ok(&ok, &payload, TRACK, TRACK, &view).unwrap(), None);
        assert!(!view.set(b"sql_mode", b""));
    }

    #[test]
    fn clients_without_session_tracking_get_the_plain_layout() {
        let (ok, payload) = ok_with(&[SessionStateEntry::Schema(b"app")]);
        let plain = CapabilityFlags::PROTOCOL_41;
        let out = client_ok(&ok, &payload, TRACK, plain, &ClientTrackers::default())
            .unwrap()
            .unwrap();
        let mut want = BytesMut::new();
        OkPacket {
            affected_rows: 3,
            status: StatusFlags::AUTOCOMMIT,
            ..OkPacket::default()
        }
        .encode(plain, &mut want);
        assert_eq!(out, want.freeze());
    }
}
