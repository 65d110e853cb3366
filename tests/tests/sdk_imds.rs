//! The AWS SDKs' own IMDS clients against `rangefleet imds-mock`: if they work, the
//! mock is faithful where it matters (token TTL header, trailing slashes, documents).

use std::process::Command;

use rangefleet_tests::ImdsMock;

#[tokio::test]
async fn aws_config_imds_client_reads_identity_region_document_and_tags() {
    let mock = ImdsMock::start(&[
        "--instance-id",
        "i-0sdkrust",
        "--region",
        "eu-west-1",
        "--availability-zone",
        "eu-west-1c",
        "--tag",
        "team=data",
    ]);
    let client = aws_config::imds::Client::builder()
        .endpoint(&mock.url)
        .expect("a valid endpoint")
        .build();
    let id = client.get("/latest/meta-data/instance-id").await.unwrap();
    assert_eq!(id.as_ref(), "i-0sdkrust");
    let region = client
        .get("/latest/meta-data/placement/region")
        .await
        .unwrap();
    assert_eq!(region.as_ref(), "eu-west-1");
    let doc = client
        .get("/latest/dynamic/instance-identity/document")
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(doc.as_ref()).unwrap();
    assert_eq!(doc["instanceId"], "i-0sdkrust");
    assert_eq!(doc["availabilityZone"], "eu-west-1c");
    let tag = client
        .get("/latest/meta-data/tags/instance/team")
        .await
        .unwrap();
    assert_eq!(tag.as_ref(), "data");
    assert_eq!(
        mock.count("PUT", "/latest/api/token").await,
        1,
        "the SDK reuses its token"
    );
}

#[tokio::test]
async fn aws_config_region_and_credentials_come_from_the_mock() {
    let mock = ImdsMock::start(&["--region", "ap-south-1", "--role", "fleet-worker"]);
    let imds = aws_config::imds::Client::builder()
        .endpoint(&mock.url)
        .expect("a valid endpoint")
        .build();
    let region = aws_config::imds::region::ImdsRegionProvider::builder()
        .imds_client(imds.clone())
        .build()
        .region()
        .await;
    assert_eq!(region.unwrap().as_ref(), "ap-south-1");
    use aws_config::meta::credentials::CredentialsProviderChain;
    use aws_credential_types::provider::ProvideCredentials;
    let provider = aws_config::imds::credentials::ImdsCredentialsProvider::builder()
        .imds_client(imds)
        .build();
    let creds = CredentialsProviderChain::first_try("imds", provider)
        .provide_credentials()
        .await
        .expect("role credentials from the mock");
    assert_eq!(creds.access_key_id(), "ASIAMOCKIMDSROLEKEY0");
}

fn venv_python() -> std::path::PathBuf {
    let venv = std::env::var_os("RANGEFLEET_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/rangefleet/venv")
        });
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} missing: run scripts/setup-python (the README's test command does)",
        py.display()
    );
    py
}

#[tokio::test]
async fn botocore_region_fetcher_and_credentials() {
    let mock = ImdsMock::start(&[
        "--region",
        "sa-east-1",
        "--availability-zone",
        "sa-east-1b",
        "--role",
        "fleet-worker",
    ]);
    // botocore asks for placement/availability-zone/ with a trailing slash and derives the
    // region from it; its credential fetcher lists roles, then reads the first.
    let script = r#"
import json, sys
from botocore.utils import InstanceMetadataRegionFetcher, InstanceMetadataFetcher
url = sys.argv[1]
region = InstanceMetadataRegionFetcher(timeout=2, num_attempts=2, base_url=url).retrieve_region()
creds = InstanceMetadataFetcher(timeout=2, num_attempts=2, base_url=url).retrieve_iam_role_credentials()
print(json.dumps({"region": region, "access_key": creds.get("access_key"), "role": creds.get("role_name")}))
"#;
    let out = Command::new(venv_python())
        .args(["-c", script, &mock.url])
        .env_remove("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["region"], "sa-east-1");
    assert_eq!(v["access_key"], "ASIAMOCKIMDSROLEKEY0");
    assert_eq!(v["role"], "fleet-worker");
    let slash = "/latest/meta-data/placement/availability-zone/";
    assert!(
        mock.count("GET", slash).await >= 1,
        "botocore asked with the trailing slash"
    );
}
