//! Where an operator's CLI finds the AWS ledger: `dynamodb://TABLE` with an
//! optional `?region=REGION` (the stack's region; else the environment's,
//! as the AWS CLI finds it). `berth claims --ledger dynamodb://…` and the
//! other read-only commands pass it to `berth-aws ledger get`.

/// A DynamoDB ledger's table and region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerUrl {
    pub table: String,
    pub region: Option<String>,
}

/// A ledger URL that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LedgerUrlError {
    #[error("ledger {0:?} is not dynamodb://TABLE[?region=REGION]")]
    Scheme(String),
    #[error("ledger {0:?}: a DynamoDB table name is 3 to 255 letters, digits, '_', '-' or '.'")]
    Table(String),
    #[error("ledger {0:?}: the only query parameter is region=REGION")]
    Query(String),
}

impl std::str::FromStr for LedgerUrl {
    type Err = LedgerUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let rest = url.strip_prefix("dynamodb://").ok_or_else(|| LedgerUrlError::Scheme(url.to_owned()))?;
        let (table, query) = rest.split_once('?').unwrap_or((rest, ""));
        // DynamoDB's rule for table names (the CreateTable API reference).
        let valid = (3..=255).contains(&table.len())
            && table.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(LedgerUrlError::Table(url.to_owned()));
        }
        let region = match query {
            "" => None,
            q => match q.strip_prefix("region=") {
                Some(r) if !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
                    Some(r.to_owned())
                }
                _ => return Err(LedgerUrlError::Query(url.to_owned())),
            },
        };
        Ok(Self { table: table.to_owned(), region })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_url_names_a_table_and_maybe_a_region() {
        let url: LedgerUrl = "dynamodb://berth-ledger?region=eu-west-1".parse().unwrap();
        assert_eq!(url, LedgerUrl { table: "berth-ledger".into(), region: Some("eu-west-1".into()) });
        assert_eq!("dynamodb://t.b_1".parse::<LedgerUrl>().unwrap().region, None);
        assert!(matches!("s3://x".parse::<LedgerUrl>(), Err(LedgerUrlError::Scheme(_))));
        assert!(matches!("dynamodb://ab".parse::<LedgerUrl>(), Err(LedgerUrlError::Table(_))));
        assert!(matches!("dynamodb://a b c".parse::<LedgerUrl>(), Err(LedgerUrlError::Table(_))));
        assert!(matches!("dynamodb://table?zone=x".parse::<LedgerUrl>(), Err(LedgerUrlError::Query(_))));
    }
}
