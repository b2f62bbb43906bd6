"""Header resolution order, and the merged Debian tree, on simulated machines."""

from pathlib import Path

from gmemtrace.kernel import headers


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def debian_split(src: Path, abi: str = "6.1.0-56", flavour: str = "cloud-amd64") -> None:
    make_tree(
        src / f"linux-headers-{abi}-common",
        {
            "include/linux/kvm_host.h": "common",
            "include/linux/shared.h": "common",
            "arch/x86/include/asm/page.h": "common",
        },
    )
    make_tree(
        src / f"linux-headers-{abi}-{flavour}",
        {
            "include/generated/autoconf.h": "arch",
            "include/linux/shared.h": "arch",
            "arch/x86/include/generated/asm/x.h": "arch",
        },
    )


def test_matching_build_directory_wins(tmp_path: Path) -> None:
    make_tree(tmp_path / "modules/6.18.0/build", {"include/linux/a.h": ""})
    debian_split(tmp_path / "src")
    found = headers.resolve(
        "6.18.0",
        {"BCC_KERNEL_SOURCE": "/x"},
        tmp_path / "modules",
        tmp_path / "src",
        tmp_path / "cache",
    )
    assert found.kind == headers.MATCHING
    assert found.env == {}


def test_user_choice_comes_before_distro_fallback(tmp_path: Path) -> None:
    user = make_tree(tmp_path / "mine", {"include/linux/a.h": ""})
    debian_split(tmp_path / "src")
    found = headers.resolve(
        "6.18.0",
        {"BCC_KERNEL_SOURCE": str(user)},
        tmp_path / "modules",
        tmp_path / "src",
        tmp_path / "cache",
    )
    assert found.kind == headers.USER
    assert found.env == {"BCC_KERNEL_SOURCE": str(user)}


def test_user_choice_without_include_is_missing(tmp_path: Path) -> None:
    found = headers.resolve(
        "6.18.0",
        {"BCC_KERNEL_SOURCE": str(tmp_path)},
        tmp_path / "m",
        tmp_path / "src",
        tmp_path / "cache",
    )
    assert found.kind == headers.MISSING
    assert "no include/" in found.detail


def test_debian_split_is_merged_with_arch_files_winning(tmp_path: Path) -> None:
    debian_split(tmp_path / "src")
    found = headers.resolve(
        "6.18.0", {}, tmp_path / "modules", tmp_path / "src", tmp_path / "cache"
    )
    assert found.kind == headers.FALLBACK
    assert found.path is not None
    tree = found.path
    assert found.env == {"BCC_KERNEL_SOURCE": str(tree)}
    assert tree.is_relative_to(tmp_path / "cache")
    assert (tree / "include/linux/kvm_host.h").read_text() == "common"
    assert (tree / "include/generated/autoconf.h").read_text() == "arch"
    assert (tree / "include/linux/shared.h").read_text() == "arch"
    assert (tree / "include/linux/kvm_host.h").is_symlink()  # linked, not copied


def test_merged_tree_is_built_once(tmp_path: Path) -> None:
    debian_split(tmp_path / "src")
    args = ("6.18.0", {}, tmp_path / "modules", tmp_path / "src", tmp_path / "cache")
    first = headers.resolve(*args)
    assert first.path is not None
    stamp = (first.path / ".complete").stat().st_mtime_ns
    second = headers.resolve(*args)
    assert second.path == first.path
    assert (first.path / ".complete").stat().st_mtime_ns == stamp


def test_newest_package_is_chosen(tmp_path: Path) -> None:
    debian_split(tmp_path / "src", "6.1.0-9")
    debian_split(tmp_path / "src", "6.12.0-10")
    debian_split(tmp_path / "src", "6.1.0-56")
    found = headers.newest_debian_headers(tmp_path / "src")
    assert found is not None
    assert found[0].name == "linux-headers-6.12.0-10-cloud-amd64"


def test_nothing_installed_is_missing_with_detail(tmp_path: Path) -> None:
    found = headers.resolve(
        "6.18.0", {}, tmp_path / "modules", tmp_path / "src", tmp_path / "cache"
    )
    assert found.kind == headers.MISSING
    assert not found.usable
    assert "no headers for 6.18.0" in found.detail
