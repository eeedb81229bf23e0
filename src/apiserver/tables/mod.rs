//! Table output (`as=Table`): the columns and rows kubectl prints for each kind.
//! (Interim: NAME and AGE for every kind until the per-kind printers land.)

pub struct Column {
    pub name: &'static str,
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

static DEFAULT: &[Column] = &[
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: "Name must be unique within a namespace.",
        priority: 0,
    },
    Column {
        name: "Created At",
        type_: "date",
        format: "",
        description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
        priority: 0,
    },
];

pub fn columns(_group: &str, _kind: &str) -> &'static [Column] {
    DEFAULT
}

pub fn cells(
    _group: &str,
    _kind: &str,
    obj: &serde_json::Value,
    _now: jiff::Timestamp,
) -> Vec<serde_json::Value> {
    let m = obj.get("metadata");
    vec![
        m.and_then(|m| m.get("name")).cloned().unwrap_or_default(),
        m.and_then(|m| m.get("creationTimestamp"))
            .cloned()
            .unwrap_or_default(),
    ]
}
