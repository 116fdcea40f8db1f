// Sets CAUSEWAY_GIT_COMMIT and CAUSEWAY_BUILD_PROFILE; see the included file.
include!("../common/build/build_info.rs");
