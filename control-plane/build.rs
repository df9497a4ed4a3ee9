// `sqlx::migrate!` embeds migrations/; a new file there must rebuild the control plane.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
