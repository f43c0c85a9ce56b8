//! The S3 target: what an `s3://` URL names, where a client configured by
//! the `AWS_*` environment variables sends its requests, and which country
//! an Amazon S3 region keeps its data in (for residency checks).

use mailledger_core::StoreError;

use crate::BACKEND;

/// Where an S3 client configured by the `AWS_*` environment variables (as
/// [`SegmentStore::open_s3`](crate::SegmentStore::open_s3) makes it) sends
/// its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Target {
    /// Amazon S3 itself, in this region (`AWS_REGION` or
    /// `AWS_DEFAULT_REGION`; the client's default is `us-east-1`).
    Amazon {
        /// The region's name, such as `eu-central-1`.
        region: String,
    },
    /// Another S3-compatible store (`AWS_ENDPOINT`): where it is, only its
    /// operator can say.
    Endpoint,
}

impl S3Target {
    /// What the environment configures, without connecting anywhere.
    #[must_use]
    pub fn from_env() -> Self {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let b = AmazonS3Builder::from_env();
        if b.get_config_value(&AmazonS3ConfigKey::Endpoint).is_some()
            || b.get_config_value(&AmazonS3ConfigKey::S3Endpoint).is_some()
        {
            return Self::Endpoint;
        }
        Self::Amazon {
            region: b
                .get_config_value(&AmazonS3ConfigKey::Region)
                .unwrap_or_else(|| "us-east-1".into()),
        }
    }
}

/// The country an Amazon S3 region keeps its data in (ISO 3166-1 alpha-2),
/// for the regions this build knows. London (`eu-west-2`) and Zurich
/// (`eu-central-2`) are named `eu-` but lie outside the EU.
#[must_use]
pub fn aws_region_country(region: &str) -> Option<&'static str> {
    Some(match region {
        "eu-central-1" | "eusc-de-east-1" => "DE",
        "eu-west-1" => "IE",
        "eu-west-3" => "FR",
        "eu-north-1" => "SE",
        "eu-south-1" => "IT",
        "eu-south-2" => "ES",
        "eu-west-2" => "GB",
        "eu-central-2" => "CH",
        "us-east-1" | "us-east-2" | "us-west-1" | "us-west-2" => "US",
        "ca-central-1" | "ca-west-1" => "CA",
        "mx-central-1" => "MX",
        "sa-east-1" => "BR",
        "af-south-1" => "ZA",
        "il-central-1" => "IL",
        "me-south-1" => "BH",
        "me-central-1" => "AE",
        "ap-east-1" => "HK",
        "ap-northeast-1" | "ap-northeast-3" => "JP",
        "ap-northeast-2" => "KR",
        "ap-south-1" | "ap-south-2" => "IN",
        "ap-southeast-1" => "SG",
        "ap-southeast-2" | "ap-southeast-4" => "AU",
        "ap-southeast-3" => "ID",
        "ap-southeast-5" => "MY",
        "ap-southeast-7" => "TH",
        _ => return None,
    })
}

/// Splits `s3://BUCKET[/PREFIX]` into bucket and prefix.
///
/// # Errors
/// Anything else, with what was expected.
pub fn parse_s3_url(url: &str) -> Result<(&str, &str), StoreError> {
    let bad = |why: &str| {
        StoreError::new(
            BACKEND,
            format!("{url:?}: {why}; expected s3://BUCKET or s3://BUCKET/PREFIX"),
        )
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_end_matches('/');
    if bucket.is_empty()
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(bad(
            "a bucket name is lowercase letters, digits, '-' and '.'",
        ));
    }
    if prefix.contains("//")
        || prefix.starts_with('/')
        || prefix.contains('?')
        || prefix.contains('#')
    {
        return Err(bad("the prefix has an empty part, a query or a fragment"));
    }
    Ok((bucket, prefix))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn s3_urls_name_a_bucket_and_an_optional_prefix() {
        assert_eq!(parse_s3_url("s3://logs").unwrap(), ("logs", ""));
        assert_eq!(
            parse_s3_url("s3://logs/eu/ledger/").unwrap(),
            ("logs", "eu/ledger")
        );
        for bad in [
            "logs",
            "s3://",
            "s3://Logs",
            "s3://logs//x",
            "s3://logs/x?y",
            "file:///tmp",
        ] {
            let err = parse_s3_url(bad).unwrap_err().to_string();
            assert!(err.contains("expected s3://BUCKET"), "{bad}: {err}");
        }
    }

    #[test]
    fn aws_regions_named_eu_outside_the_eu_are_placed_where_they_are() {
        assert_eq!(aws_region_country("eu-central-1"), Some("DE"));
        assert_eq!(aws_region_country("eu-west-1"), Some("IE"));
        assert_eq!(aws_region_country("eu-west-2"), Some("GB"));
        assert_eq!(aws_region_country("eu-central-2"), Some("CH"));
        assert_eq!(aws_region_country("us-east-1"), Some("US"));
        assert_eq!(aws_region_country("eu-nowhere-9"), None);
    }
}
