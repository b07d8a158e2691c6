//! The OVSDB cache as hostd's observed OVS model: rows by name, references
//! by name, managed columns decoded by their kind, status columns apart.

use std::collections::BTreeMap;

use hostd_core::ovs::{model::ColDefault, Col, OvsObserved, OvsRow, Table};
use hostd_ovsdb::{Atom, Cache, Client, Row, Uuid};

/// Status (read-only) columns kept per table.
const STATUS: &[(Table, &[&str])] = &[
    (Table::Bridge, &[]),
    (Table::Port, &["bond_active_slave"]),
    (
        Table::Interface,
        &[
            "ofport",
            "error",
            "lacp_current",
            "link_state",
            "admin_state",
        ],
    ),
];

fn decode(r: &Row, column: &str, kind: ColDefault) -> Col {
    match kind {
        ColDefault::EmptyStr => Col::Str(r.str(column).unwrap_or_default()),
        ColDefault::False => Col::Bool(r.bool(column).unwrap_or(false)),
        ColDefault::Zero => Col::Int(r.int(column).unwrap_or(0)),
        ColDefault::EmptyInts => {
            let mut v = r.ints(column);
            v.sort_unstable();
            Col::Ints(v)
        }
        ColDefault::EmptyMap => Col::Map(r.str_map(column)),
        ColDefault::Null => atom_col(r.atom(column)),
    }
}

fn atom_col(a: Option<Atom>) -> Col {
    match a {
        None => Col::Null,
        Some(Atom::Str(s)) => Col::Str(s),
        Some(Atom::Int(i)) => Col::Int(i),
        Some(Atom::Bool(b)) => Col::Bool(b),
        Some(Atom::Real(f)) => Col::Str(f.to_string()),
        Some(Atom::Uuid(u)) => Col::Str(u.0),
        Some(Atom::Named(n)) => Col::Str(n),
    }
}

fn names(c: &Cache, table: &str, refs: Vec<Uuid>) -> Vec<String> {
    let mut v: Vec<String> = refs
        .iter()
        .filter_map(|u| c.row(table, u).and_then(|r| r.str("name")))
        .collect();
    v.sort();
    v
}

/// Reads the cache of `client` (monitoring [`hostd_ovsdb::HOSTD_TABLES`]).
pub fn observe(client: &Client) -> OvsObserved {
    client.with_cache(from_cache)
}

/// Converts a cache.
pub fn from_cache(c: &Cache) -> OvsObserved {
    let mut out = OvsObserved::default();
    for t in [Table::Bridge, Table::Port, Table::Interface] {
        let status_cols = STATUS
            .iter()
            .find(|(st, _)| *st == t)
            .map_or(&[][..], |(_, s)| *s);
        for (_, r) in c.rows(t.as_str()) {
            let Some(name) = r.str("name") else { continue };
            let columns: BTreeMap<String, Col> = t
                .managed()
                .iter()
                .map(|(col, kind)| ((*col).to_owned(), decode(r, col, *kind)))
                .collect();
            let refs = match t {
                Table::Bridge => names(c, "Port", r.uuids("ports")),
                Table::Port => names(c, "Interface", r.uuids("interfaces")),
                Table::Interface => Vec::new(),
            };
            let status = status_cols
                .iter()
                .filter_map(|s| match atom_col(r.atom(s)) {
                    Col::Null => None,
                    v => Some(((*s).to_owned(), v)),
                })
                .collect();
            out.rows_mut(t).push(OvsRow {
                name,
                external_ids: r.str_map("external_ids"),
                columns,
                refs,
                status,
            });
        }
    }
    out.normalize();
    out
}
