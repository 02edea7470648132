//! `switchboard db`: migrations, and copying a whole installation from one database to another.

use anyhow::{Context, Result, bail};
use switchboard_store::{Snapshot, StoreError};

use crate::backend;
use crate::output::Table;
use crate::secret::DatabaseUrl;

/// `db migrate`.
pub async fn migrate(url: &DatabaseUrl) -> Result<()> {
    let store = backend::open_migrated(url).await?;
    outln!("the {} database {url} is up to date", store.backend());
    Ok(())
}

/// `db copy`: migrate the target, export the source, import into the target, then export the
/// target and compare, so a row a backend silently dropped or changed is reported instead of
/// being discovered after the source is gone.
pub async fn copy(from: &DatabaseUrl, to: &DatabaseUrl) -> Result<()> {
    if from.expose() == to.expose() {
        bail!("--from and --to name the same database");
    }
    // Opening a SQLite URL creates the file, and an empty new file would then be "copied"
    // successfully; a missing source is a mistake worth stopping on.
    if let Some(path) = from.sqlite_path()
        && !path.exists()
    {
        bail!(
            "--from: the SQLite database {} does not exist",
            path.display()
        );
    }
    let source = backend::open(from).await.context("--from")?;
    let target = backend::open(to).await.context("--to")?;
    target
        .migrate()
        .await
        .with_context(|| format!("--to: cannot migrate {to}"))?;

    let snapshot = source.export().await.with_context(|| {
        format!(
            "--from: cannot read {from} (if an older version made it, run `switchboard db migrate \
             --database-url ...` on it first)"
        )
    })?;
    target.import(&snapshot).await.map_err(|e| match e {
        StoreError::Conflict { .. } => {
            anyhow::anyhow!("--to: {to} already holds data; copy only into an empty database")
        }
        other => anyhow::Error::new(other).context(format!("--to: cannot write {to}")),
    })?;
    let copied = target
        .export()
        .await
        .with_context(|| format!("--to: cannot read back {to}"))?;

    let mut table = Table::new(&["table", "source rows", "target rows"]);
    table.align_right(&[1, 2]);
    for (i, dump) in snapshot.tables.iter().enumerate() {
        let copied_rows = copied
            .tables
            .get(i)
            .filter(|t| t.name == dump.name)
            .map_or(0, |t| t.rows.len());
        table.row(vec![
            dump.name.clone(),
            dump.rows.len().to_string(),
            copied_rows.to_string(),
        ]);
    }
    table.print();
    let differences = differences(&snapshot, &copied);
    if !differences.is_empty() {
        bail!(
            "the copy in {to} differs from the source: {}; the source is unchanged",
            differences.join("; ")
        );
    }
    outln!(
        "copied {} rows in {} tables from {} ({from}) to {} ({to}); the copy matches the source",
        snapshot.row_count(),
        snapshot.tables.len(),
        source.backend(),
        target.backend()
    );
    Ok(())
}

/// What differs between two snapshots, table by table.
fn differences(source: &Snapshot, copy: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for dump in &source.tables {
        let Some(other) = copy.tables.iter().find(|t| t.name == dump.name) else {
            out.push(format!("table {} is missing", dump.name));
            continue;
        };
        if dump.rows.len() != other.rows.len() {
            out.push(format!(
                "table {} has {} rows instead of {}",
                dump.name,
                other.rows.len(),
                dump.rows.len()
            ));
        } else if let Some(i) = dump.rows.iter().zip(&other.rows).position(|(a, b)| a != b) {
            // Only the position: rows may hold secrets (sealed, but still not for a terminal).
            out.push(format!("table {} differs from row {} on", dump.name, i + 1));
        }
    }
    for other in &copy.tables {
        if !source.tables.iter().any(|t| t.name == other.name) {
            out.push(format!("table {} is not in the source", other.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use switchboard_store::{Cell, TableDump};

    use super::*;

    #[test]
    fn differences_are_named_by_table() {
        let dump = |name: &str, rows: Vec<Vec<Cell>>| TableDump {
            name: name.into(),
            rows,
        };
        let source = Snapshot {
            tables: vec![
                dump("users", vec![vec![Cell::Int(1)], vec![Cell::Int(2)]]),
                dump("orgs", vec![]),
            ],
        };
        assert!(differences(&source, &source.clone()).is_empty());
        let copy = Snapshot {
            tables: vec![
                dump("users", vec![vec![Cell::Int(1)], vec![Cell::Int(3)]]),
                dump("extra", vec![]),
            ],
        };
        let found = differences(&source, &copy);
        assert_eq!(
            found,
            [
                "table users differs from row 2 on",
                "table orgs is missing",
                "table extra is not in the source"
            ]
        );
    }
}
