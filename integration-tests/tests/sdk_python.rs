//! The official Python SDK against a gateway on a 3-node fleet. Needs the `meilisearch`
//! package (`pip install meilisearch`, which .ci/run does).

use crate::gateway_indexes::fleet;
use miroir_integration_tests::MASTER_KEY;

#[tokio::test]
async fn the_python_sdk_works_unchanged() {
    let (_dir, _cp, _nodes, gateway) = fleet(3).await;
    miroir_integration_tests::run_python_check(
        "sdk_gateway.py",
        &[gateway.url.as_ref(), MASTER_KEY.as_ref()],
    )
    .await;
}
