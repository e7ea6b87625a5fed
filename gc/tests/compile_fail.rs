//! Misuse that must not compile (trybuild). Regenerate the expected messages with
//! `TRYBUILD=overwrite cargo test -p gomalloc-gc --test compile_fail` after checking them.

#[test]
fn misuse_does_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
