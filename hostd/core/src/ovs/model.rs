//! The observed OVS model: the Bridge, Port and Interface rows the OVSDB
//! cache holds, by name (OVSDB indexes all three tables by name), with the
//! columns hostd manages and the ownership tag in `external_ids`.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

/// The `external_ids` key marking rows hostd created.
pub const OWNER_KEY: &str = "hostd-owner";
/// Its value.
pub const OWNER_VALUE: &str = "hostd";

/// The three tables hostd writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Table {
    Bridge,
    Port,
    Interface,
}

impl Table {
    /// The OVSDB table name.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Bridge => "Bridge",
            Table::Port => "Port",
            Table::Interface => "Interface",
        }
    }

    /// The columns hostd manages (compares, sets, restores) and their
    /// defaults: an observed row missing one has the default.
    pub fn managed(self) -> &'static [(&'static str, ColDefault)] {
        use ColDefault::*;
        match self {
            Table::Bridge => &[
                ("datapath_type", EmptyStr),
                ("fail_mode", Null),
                ("stp_enable", False),
                ("rstp_enable", False),
                ("mcast_snooping_enable", False),
            ],
            Table::Port => &[
                ("tag", Null),
                ("trunks", EmptyInts),
                ("vlan_mode", Null),
                ("bond_mode", Null),
                ("lacp", Null),
                ("bond_updelay", Zero),
                ("bond_downdelay", Zero),
                ("other_config", EmptyMap),
                ("fake_bridge", False),
            ],
            Table::Interface => &[
                ("type", EmptyStr),
                ("options", EmptyMap),
                ("mtu_request", Null),
            ],
        }
    }

    /// What a row of this table refers to by name: a bridge's ports, a
    /// port's interfaces.
    pub fn child(self) -> Option<Table> {
        match self {
            Table::Bridge => Some(Table::Port),
            Table::Port => Some(Table::Interface),
            Table::Interface => None,
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Table::Bridge => "bridge",
            Table::Port => "port",
            Table::Interface => "interface",
        })
    }
}

/// A managed column's default value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColDefault {
    EmptyStr,
    Null,
    False,
    Zero,
    EmptyInts,
    EmptyMap,
}

impl ColDefault {
    /// The value.
    pub fn value(self) -> Col {
        match self {
            ColDefault::EmptyStr => Col::Str(String::new()),
            ColDefault::Null => Col::Null,
            ColDefault::False => Col::Bool(false),
            ColDefault::Zero => Col::Int(0),
            ColDefault::EmptyInts => Col::Ints(Vec::new()),
            ColDefault::EmptyMap => Col::Map(BTreeMap::new()),
        }
    }
}

/// A column value in the shapes hostd uses. `Null` is an unset optional
/// column (the empty set).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Col {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    /// A set of integers (`trunks`), sorted.
    Ints(Vec<i64>),
    /// A string map (`options`, `other_config`).
    Map(BTreeMap<String, String>),
}

impl Col {
    /// A string value.
    pub fn str(s: &str) -> Col {
        Col::Str(s.to_owned())
    }

    /// Whether this is the default of `column` in `table`.
    pub fn is_default(&self, table: Table, column: &str) -> bool {
        table
            .managed()
            .iter()
            .find(|(c, _)| *c == column)
            .is_some_and(|(_, d)| d.value() == *self)
    }
}

impl fmt::Display for Col {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Col::Null => f.write_str("[]"),
            Col::Bool(b) => write!(f, "{b}"),
            Col::Int(i) => write!(f, "{i}"),
            Col::Str(s) if s.is_empty() || s.contains([' ', ',', '=']) => write!(f, "{s:?}"),
            Col::Str(s) => f.write_str(s),
            Col::Ints(v) => {
                let s: Vec<String> = v.iter().map(i64::to_string).collect();
                write!(f, "[{}]", s.join(","))
            }
            Col::Map(m) => {
                let s: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "{{{}}}", s.join(","))
            }
        }
    }
}

/// One row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OvsRow {
    /// `name`.
    pub name: String,
    /// `external_ids`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: BTreeMap<String, String>,
    /// Managed columns (missing ones are at their defaults).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, Col>,
    /// Names of the referenced rows: a bridge's ports, a port's interfaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<String>,
    /// Read-only status columns (`ofport`, `error`, `lacp_current`,
    /// `link_state`, `bond_active_slave`...): shown, never compared.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status: BTreeMap<String, Col>,
}

impl OvsRow {
    /// Whether hostd created this row.
    pub fn owned(&self) -> bool {
        self.external_ids.get(OWNER_KEY).map(String::as_str) == Some(OWNER_VALUE)
    }

    /// A managed column's value (its default if absent).
    pub fn col(&self, table: Table, column: &str) -> Col {
        self.columns.get(column).cloned().unwrap_or_else(|| {
            table
                .managed()
                .iter()
                .find(|(c, _)| *c == column)
                .map_or(Col::Null, |(_, d)| d.value())
        })
    }
}

/// What OVSDB holds: rows by table, each list sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OvsObserved {
    #[serde(default)]
    pub bridges: Vec<OvsRow>,
    #[serde(default)]
    pub ports: Vec<OvsRow>,
    #[serde(default)]
    pub interfaces: Vec<OvsRow>,
}

impl OvsObserved {
    /// The rows of `table`.
    pub fn rows(&self, table: Table) -> &[OvsRow] {
        match table {
            Table::Bridge => &self.bridges,
            Table::Port => &self.ports,
            Table::Interface => &self.interfaces,
        }
    }

    /// Mutable rows of `table`.
    pub fn rows_mut(&mut self, table: Table) -> &mut Vec<OvsRow> {
        match table {
            Table::Bridge => &mut self.bridges,
            Table::Port => &mut self.ports,
            Table::Interface => &mut self.interfaces,
        }
    }

    /// The row of `table` named `name`.
    pub fn get(&self, table: Table, name: &str) -> Option<&OvsRow> {
        self.rows(table).iter().find(|r| r.name == name)
    }

    /// The name of the row referring to `name` (a port's bridge, an
    /// interface's port).
    pub fn parent(&self, table: Table, name: &str) -> Option<&str> {
        let up = match table {
            Table::Bridge => return None,
            Table::Port => Table::Bridge,
            Table::Interface => Table::Port,
        };
        self.rows(up)
            .iter()
            .find(|r| r.refs.iter().any(|c| c == name))
            .map(|r| r.name.as_str())
    }

    /// Sorts rows and references by name (what observation produces).
    pub fn normalize(&mut self) {
        for t in [Table::Bridge, Table::Port, Table::Interface] {
            let rows = self.rows_mut(t);
            rows.sort_by(|a, b| a.name.cmp(&b.name));
            for r in rows.iter_mut() {
                r.refs.sort();
            }
        }
    }

    /// The same rows without status columns and with every managed column
    /// spelled out: two observations of the same configuration compare equal.
    pub fn config_view(&self) -> OvsObserved {
        let mut out = self.clone();
        for t in [Table::Bridge, Table::Port, Table::Interface] {
            for r in out.rows_mut(t) {
                r.status.clear();
                for (c, d) in t.managed() {
                    r.columns
                        .entry((*c).to_owned())
                        .or_insert_with(|| d.value());
                }
            }
        }
        out.normalize();
        out
    }
}
