//! OVSDB values (RFC 7047 section 5.1): atoms, sets, maps, and rows.
//!
//! On the wire a set is `["set",[a,b]]` (a one-element set may be sent as the
//! bare atom), a map is `["map",[[k,v],...]]`, a UUID is `["uuid","..."]` and a
//! reference to a row inserted earlier in the same transaction is
//! `["named-uuid","name"]`. An optional column (`min: 0, max: 1`) is a set of
//! zero or one element.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// A row's UUID as the server spells it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub String);

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One atom.
#[derive(Debug, Clone, PartialEq)]
pub enum Atom {
    Str(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    Uuid(Uuid),
    /// `["named-uuid", name]`: a row inserted by this transaction.
    Named(String),
}

impl Atom {
    /// The wire form.
    pub fn to_json(&self) -> Value {
        match self {
            Atom::Str(s) => json!(s),
            Atom::Int(i) => json!(i),
            Atom::Real(r) => json!(r),
            Atom::Bool(b) => json!(b),
            Atom::Uuid(u) => json!(["uuid", u.0]),
            Atom::Named(n) => json!(["named-uuid", n]),
        }
    }

    /// Parses an atom; `None` for anything that is not one.
    pub fn from_json(v: &Value) -> Option<Atom> {
        match v {
            Value::String(s) => Some(Atom::Str(s.clone())),
            Value::Bool(b) => Some(Atom::Bool(*b)),
            Value::Number(n) => n
                .as_i64()
                .map(Atom::Int)
                .or_else(|| n.as_f64().map(Atom::Real)),
            Value::Array(a) if a.len() == 2 => match (a[0].as_str(), a[1].as_str()) {
                (Some("uuid"), Some(u)) => Some(Atom::Uuid(Uuid(u.to_owned()))),
                (Some("named-uuid"), Some(n)) => Some(Atom::Named(n.to_owned())),
                _ => None,
            },
            _ => None,
        }
    }

    /// The string, if a string atom.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if an integer atom.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Atom::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The UUID, if a UUID atom.
    pub fn as_uuid(&self) -> Option<&Uuid> {
        match self {
            Atom::Uuid(u) => Some(u),
            _ => None,
        }
    }
}

/// Builders for wire values.
pub mod wire {
    use super::*;

    /// `["set",[...]]`.
    pub fn set(atoms: impl IntoIterator<Item = Atom>) -> Value {
        json!([
            "set",
            atoms.into_iter().map(|a| a.to_json()).collect::<Vec<_>>()
        ])
    }

    /// The empty set (an unset optional column).
    pub fn empty() -> Value {
        json!(["set", []])
    }

    /// An optional column: the atom, or the empty set.
    pub fn opt(atom: Option<Atom>) -> Value {
        match atom {
            Some(a) => a.to_json(),
            None => empty(),
        }
    }

    /// `["map",[[k,v],...]]` with string keys and values.
    pub fn str_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
        json!([
            "map",
            pairs
                .into_iter()
                .map(|(k, v)| json!([k, v]))
                .collect::<Vec<_>>()
        ])
    }

    /// `["uuid", u]`.
    pub fn uuid(u: &Uuid) -> Value {
        Atom::Uuid(u.clone()).to_json()
    }

    /// `["named-uuid", n]`.
    pub fn named(n: &str) -> Value {
        Atom::Named(n.to_owned()).to_json()
    }
}

/// A row as the server sent it (only the columns asked for).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row(pub Map<String, Value>);

impl Row {
    /// The raw column value.
    pub fn raw(&self, column: &str) -> Option<&Value> {
        self.0.get(column)
    }

    /// The atoms of a column: a set's members, or a bare atom as one member.
    /// Empty if the column is absent, an empty set, or a map.
    pub fn atoms(&self, column: &str) -> Vec<Atom> {
        match self.0.get(column) {
            None => Vec::new(),
            Some(Value::Array(a)) if a.len() == 2 && a[0] == "set" => a[1]
                .as_array()
                .map(|m| m.iter().filter_map(Atom::from_json).collect())
                .unwrap_or_default(),
            Some(Value::Array(a)) if a.len() == 2 && a[0] == "map" => Vec::new(),
            Some(v) => Atom::from_json(v).into_iter().collect(),
        }
    }

    /// An optional or scalar column's single atom.
    pub fn atom(&self, column: &str) -> Option<Atom> {
        let mut a = self.atoms(column);
        if a.len() == 1 {
            a.pop()
        } else {
            None
        }
    }

    /// A string column (or optional string column), if set.
    pub fn str(&self, column: &str) -> Option<String> {
        self.atom(column)
            .and_then(|a| a.as_str().map(str::to_owned))
    }

    /// An integer column (or optional integer column), if set.
    pub fn int(&self, column: &str) -> Option<i64> {
        self.atom(column).and_then(|a| a.as_int())
    }

    /// A boolean column, if set.
    pub fn bool(&self, column: &str) -> Option<bool> {
        match self.atom(column) {
            Some(Atom::Bool(b)) => Some(b),
            _ => None,
        }
    }

    /// A set of integers.
    pub fn ints(&self, column: &str) -> Vec<i64> {
        self.atoms(column).iter().filter_map(Atom::as_int).collect()
    }

    /// A set of UUIDs (references).
    pub fn uuids(&self, column: &str) -> Vec<Uuid> {
        self.atoms(column)
            .iter()
            .filter_map(|a| a.as_uuid().cloned())
            .collect()
    }

    /// A string-to-string map column (`external_ids`, `other_config`, `options`, ...).
    pub fn str_map(&self, column: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(Value::Array(a)) = self.0.get(column) {
            if a.len() == 2 && a[0] == "map" {
                for pair in a[1].as_array().into_iter().flatten() {
                    if let Some([k, v]) = pair.as_array().map(Vec::as_slice) {
                        let key = match Atom::from_json(k) {
                            Some(Atom::Str(s)) => s,
                            _ => continue,
                        };
                        let val = match Atom::from_json(v) {
                            Some(Atom::Str(s)) => s,
                            Some(Atom::Int(i)) => i.to_string(),
                            Some(Atom::Bool(b)) => b.to_string(),
                            Some(Atom::Uuid(u)) => u.0,
                            _ => continue,
                        };
                        out.insert(key, val);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_columns() {
        let row = Row(serde_json::from_str::<Map<String, Value>>(
            r#"{"name":"br0","tag":["set",[]],"tag2":100,"trunks":["set",[10,20]],
                "ports":["set",[["uuid","a"],["uuid","b"]]],"port1":["uuid","c"],
                "external_ids":["map",[["hostd-owner","hostd"],["n","1"]]],"ofport":["set",[-1]],
                "stp_enable":false}"#,
        )
        .unwrap());
        assert_eq!(row.str("name").as_deref(), Some("br0"));
        assert_eq!(row.int("tag"), None);
        assert_eq!(row.int("tag2"), Some(100));
        assert_eq!(row.ints("trunks"), vec![10, 20]);
        assert_eq!(row.uuids("ports"), vec![Uuid("a".into()), Uuid("b".into())]);
        assert_eq!(row.uuids("port1"), vec![Uuid("c".into())]);
        assert_eq!(row.int("ofport"), Some(-1));
        assert_eq!(row.bool("stp_enable"), Some(false));
        assert_eq!(
            row.str_map("external_ids")
                .get("hostd-owner")
                .map(String::as_str),
            Some("hostd")
        );
        assert!(row.str_map("name").is_empty());
        assert!(row.atoms("missing").is_empty());
    }

    #[test]
    fn encode() {
        assert_eq!(
            wire::set([Atom::Int(1), Atom::Int(2)]).to_string(),
            r#"["set",[1,2]]"#
        );
        assert_eq!(wire::opt(None).to_string(), r#"["set",[]]"#);
        assert_eq!(
            wire::str_map([("a", "b")]).to_string(),
            r#"["map",[["a","b"]]]"#
        );
        assert_eq!(wire::named("p0").to_string(), r#"["named-uuid","p0"]"#);
    }
}
