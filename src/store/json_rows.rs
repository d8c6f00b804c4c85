//! Many rows or keys passed to a read as one JSON array bound as a single parameter, and a
//! page of results handed back as JSON values, which both backends build and read natively:
//! thousands of placeholders bound one by one cost more than the statement itself. Writes bind
//! each value instead (`batch`): SQLite read a JSON array of rows back field by field.

use super::{Backend, Store};

/// JSON as the SQL of one backend builds and reads it: `$1` is a JSON array of arrays, and
/// `j.value ->> N` is the N-th field of a row on both backends.
#[derive(Clone, Copy)]
pub struct JsonRows {
    backend: Backend,
}

impl Store {
    pub fn json_rows(&self) -> JsonRows {
        JsonRows { backend: self.backend }
    }
}

impl JsonRows {
    /// As the connection (or transaction) `connection` reads them.
    pub(crate) fn of(connection: &sqlx::AnyConnection) -> JsonRows {
        JsonRows { backend: Backend::of(connection) }
    }

    /// The strings of the JSON array bound as parameter `$n`, as a one-column subquery.
    pub(crate) fn strings(self, n: usize) -> String {
        match self.backend {
            Backend::Sqlite => format!("SELECT value FROM json_each(${n})"),
            Backend::Postgres => format!("SELECT jsonb_array_elements_text(${n}::jsonb)"),
        }
    }

    /// `WITH j AS (…)`: the rows of the array bound as `$1`, each as `j.value`, to open a
    /// statement that reads them `FROM j`. SQLite's `json_each` hands each row out as text,
    /// which every `j.value ->> N` parsed again: twenty fields meant twenty parses a row. The
    /// rows are made binary once, here, and kept (`MATERIALIZED`, or SQLite would fold the
    /// conversion back into each field).
    pub(crate) fn with_rows(self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "WITH j AS MATERIALIZED (SELECT jsonb(value) AS value FROM json_each($1))",
            Backend::Postgres => "WITH j AS (SELECT value FROM jsonb_array_elements($1::jsonb))",
        }
    }

    /// `columns` as one JSON array, per row.
    pub(crate) fn row(self, columns: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("json_array({columns})"),
            Backend::Postgres => format!("json_build_array({columns})"),
        }
    }

    /// An aggregate expression: the group's `value`s as one JSON array, as JSON (`null` on
    /// PostgreSQL when there are none).
    fn json_array_of(self, value: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("json_group_array({value})"),
            Backend::Postgres => format!("json_agg({value})"),
        }
    }

    /// The group's rows as one JSON array of arrays of `columns`, as text, which both
    /// backends decode alike.
    pub(crate) fn array_of(self, columns: &str) -> String {
        let rows = self.json_array_of(&self.row(columns));
        match self.backend {
            Backend::Sqlite => rows,
            Backend::Postgres => format!("CAST({rows} AS TEXT)"),
        }
    }

    /// An aggregate expression: one JSON array, as text, holding for each `(value, condition)`
    /// the `value`s of the group's rows that meet the condition as an array (empty or `null`
    /// when none do). A page of rows then decodes as one value per group, whichever kinds of
    /// rows it holds. The arrays of one call list their rows in the same order.
    pub(crate) fn arrays_where(self, groups: &[(&str, &str)]) -> String {
        let arrays: Vec<String> = groups
            .iter()
            .map(|(value, condition)| format!("{} FILTER (WHERE {condition})", self.json_array_of(value)))
            .collect();
        self.array_of_arrays(&arrays)
    }

    /// An aggregate expression: the group's rows column by column, one JSON array, as text,
    /// holding each of `columns` as an array (empty when there are no rows), all in
    /// the same order. Both backends build an array of plain values far faster than an array
    /// per row, which looks up how to write each field anew.
    pub(crate) fn columns_of(self, columns: &[&str]) -> String {
        let arrays: Vec<String> = columns
            .iter()
            .map(|column| match self.backend {
                Backend::Sqlite => self.json_array_of(column),
                Backend::Postgres => format!("COALESCE({}, '[]')", self.json_array_of(column)),
            })
            .collect();
        self.array_of_arrays(&arrays)
    }

    fn array_of_arrays(self, arrays: &[String]) -> String {
        let arrays = arrays.join(", ");
        match self.backend {
            Backend::Sqlite => format!("json_array({arrays})"),
            Backend::Postgres => format!("CAST(json_build_array({arrays}) AS TEXT)"),
        }
    }
}
