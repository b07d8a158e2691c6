//! Transaction operations (RFC 7047 section 5.2) and their results.

use serde_json::{json, Map, Value};

use crate::datum::{wire, Row, Uuid};

/// A `where` clause element: `[column, function, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: String,
    pub function: &'static str,
    pub value: Value,
}

impl Condition {
    /// `column == value`.
    pub fn eq(column: &str, value: Value) -> Self {
        Self {
            column: column.to_owned(),
            function: "==",
            value,
        }
    }

    /// `_uuid == u`.
    pub fn uuid(u: &Uuid) -> Self {
        Self::eq("_uuid", wire::uuid(u))
    }

    /// `name == n` (Bridge, Port and Interface are indexed by name).
    pub fn name(n: &str) -> Self {
        Self::eq("name", json!(n))
    }

    fn to_json(&self) -> Value {
        json!([self.column, self.function, self.value])
    }
}

/// A `mutate` element: `[column, mutator, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub column: String,
    pub mutator: &'static str,
    pub value: Value,
}

impl Mutation {
    /// Adds elements to a set or pairs to a map.
    pub fn insert(column: &str, value: Value) -> Self {
        Self {
            column: column.to_owned(),
            mutator: "insert",
            value,
        }
    }

    /// Removes elements from a set, or keys (a set) / pairs (a map) from a map.
    pub fn delete(column: &str, value: Value) -> Self {
        Self {
            column: column.to_owned(),
            mutator: "delete",
            value,
        }
    }

    /// Adds to an integer column.
    pub fn add(column: &str, n: i64) -> Self {
        Self {
            column: column.to_owned(),
            mutator: "+=",
            value: json!(n),
        }
    }

    fn to_json(&self) -> Value {
        json!([self.column, self.mutator, self.value])
    }
}

/// What a `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The selected rows' columns equal the given rows.
    Equal,
    /// They differ.
    NotEqual,
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Inserts a row; `uuid_name` lets later operations refer to it.
    Insert {
        table: String,
        row: Map<String, Value>,
        uuid_name: Option<String>,
    },
    /// Reads rows.
    Select {
        table: String,
        conditions: Vec<Condition>,
        columns: Option<Vec<String>>,
    },
    /// Sets columns of matching rows.
    Update {
        table: String,
        conditions: Vec<Condition>,
        row: Map<String, Value>,
    },
    /// Mutates columns of matching rows.
    Mutate {
        table: String,
        conditions: Vec<Condition>,
        mutations: Vec<Mutation>,
    },
    /// Deletes matching rows.
    Delete {
        table: String,
        conditions: Vec<Condition>,
    },
    /// Optimistic concurrency: abort unless (or until, within `timeout_ms`)
    /// the matching rows' `columns` compare to `rows` as `until` says.
    Wait {
        table: String,
        conditions: Vec<Condition>,
        columns: Vec<String>,
        until: Until,
        rows: Vec<Map<String, Value>>,
        timeout_ms: Option<u64>,
    },
    /// A comment written to the database log.
    Comment(String),
}

fn conds(c: &[Condition]) -> Value {
    Value::Array(c.iter().map(Condition::to_json).collect())
}

impl Op {
    /// The wire form.
    pub fn to_json(&self) -> Value {
        match self {
            Op::Insert {
                table,
                row,
                uuid_name,
            } => {
                let mut o = json!({"op": "insert", "table": table, "row": row});
                if let Some(n) = uuid_name {
                    o["uuid-name"] = json!(n);
                }
                o
            }
            Op::Select {
                table,
                conditions,
                columns,
            } => {
                let mut o = json!({"op": "select", "table": table, "where": conds(conditions)});
                if let Some(c) = columns {
                    o["columns"] = json!(c);
                }
                o
            }
            Op::Update {
                table,
                conditions,
                row,
            } => json!({"op": "update", "table": table, "where": conds(conditions), "row": row}),
            Op::Mutate {
                table,
                conditions,
                mutations,
            } => json!({
                "op": "mutate", "table": table, "where": conds(conditions),
                "mutations": mutations.iter().map(Mutation::to_json).collect::<Vec<_>>(),
            }),
            Op::Delete { table, conditions } => {
                json!({"op": "delete", "table": table, "where": conds(conditions)})
            }
            Op::Wait {
                table,
                conditions,
                columns,
                until,
                rows,
                timeout_ms,
            } => {
                let mut o = json!({
                    "op": "wait", "table": table, "where": conds(conditions),
                    "columns": columns, "rows": rows,
                    "until": match until { Until::Equal => "==", Until::NotEqual => "!=" },
                });
                if let Some(t) = timeout_ms {
                    o["timeout"] = json!(t);
                }
                o
            }
            Op::Comment(c) => json!({"op": "comment", "comment": c}),
        }
    }

    /// A short description for error messages: `insert Bridge`, `comment`, ...
    pub fn summary(&self) -> String {
        match self {
            Op::Insert { table, .. } => format!("insert {table}"),
            Op::Select { table, .. } => format!("select {table}"),
            Op::Update { table, .. } => format!("update {table}"),
            Op::Mutate { table, .. } => format!("mutate {table}"),
            Op::Delete { table, .. } => format!("delete {table}"),
            Op::Wait { table, .. } => format!("wait {table}"),
            Op::Comment(_) => "comment".into(),
        }
    }
}

/// The results of a successful transaction, one per operation, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnResult(pub Vec<Value>);

impl TxnResult {
    /// The UUID an `insert` at `index` created.
    pub fn inserted(&self, index: usize) -> Option<Uuid> {
        let r = Row(self.0.get(index)?.as_object()?.clone());
        r.atom("uuid").and_then(|a| a.as_uuid().cloned())
    }

    /// The rows a `select` at `index` returned.
    pub fn rows(&self, index: usize) -> Vec<Row> {
        self.0
            .get(index)
            .and_then(|v| v.get("rows"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_object().cloned().map(Row))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many rows an `update`/`mutate`/`delete` at `index` matched.
    pub fn count(&self, index: usize) -> Option<u64> {
        self.0.get(index)?.get("count")?.as_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        let op = Op::Mutate {
            table: "Bridge".into(),
            conditions: vec![Condition::name("br0")],
            mutations: vec![Mutation::insert(
                "ports",
                wire::set([crate::Atom::Named("p".into())]),
            )],
        };
        assert_eq!(
            op.to_json().to_string(),
            r#"{"mutations":[["ports","insert",["set",[["named-uuid","p"]]]]],"op":"mutate","table":"Bridge","where":[["name","==","br0"]]}"#
        );
        let w = Op::Wait {
            table: "Open_vSwitch".into(),
            conditions: vec![],
            columns: vec!["cur_cfg".into()],
            until: Until::Equal,
            rows: vec![serde_json::from_str(r#"{"cur_cfg":3}"#).unwrap()],
            timeout_ms: Some(0),
        };
        assert_eq!(w.to_json()["until"], "==");
        assert_eq!(w.to_json()["timeout"], 0);
        let r = TxnResult(vec![
            json!({"uuid": ["uuid", "u1"]}),
            json!({"count": 2}),
            json!({"rows": [{"a": 1}]}),
        ]);
        assert_eq!(r.inserted(0), Some(Uuid("u1".into())));
        assert_eq!(r.count(1), Some(2));
        assert_eq!(r.rows(2).len(), 1);
    }
}
