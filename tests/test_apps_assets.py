"""Release asset choice across real projects' release asset lists: OS, architecture and libc
aliases, formats, hints, checksum files and a reason for every asset not chosen."""

from __future__ import annotations

import pytest

from hoodyd.apps.catalog.assets import (
    Asset,
    Target,
    checksum_candidates,
    checksums_from_text,
    choose,
    classify,
)
from tests.data.apps import releases as r

GLIBC_AMD64 = Target("linux", "amd64", "glibc")
GLIBC_ARM64 = Target("linux", "arm64", "glibc")
MUSL_AMD64 = Target("linux", "amd64", "musl")

TABLE = [
    # (release, names, target, program, hint, expected)
    ("ripgrep", r.RIPGREP_14_1_1, GLIBC_AMD64, "rg", None,
     "ripgrep-14.1.1-x86_64-unknown-linux-musl.tar.gz"),
    ("ripgrep", r.RIPGREP_14_1_1, GLIBC_ARM64, "rg", None,
     "ripgrep-14.1.1-aarch64-unknown-linux-gnu.tar.gz"),
    ("ripgrep", r.RIPGREP_14_1_1, MUSL_AMD64, "rg", None,
     "ripgrep-14.1.1-x86_64-unknown-linux-musl.tar.gz"),
    ("fzf", r.FZF_0_56_3, GLIBC_AMD64, "fzf", None, "fzf-0.56.3-linux_amd64.tar.gz"),
    ("fzf", r.FZF_0_56_3, GLIBC_ARM64, "fzf", None, "fzf-0.56.3-linux_arm64.tar.gz"),
    ("neovim", r.NEOVIM_0_11_0, GLIBC_AMD64, "nvim", None, "nvim-linux-x86_64.appimage"),
    ("neovim", r.NEOVIM_0_11_0, GLIBC_ARM64, "nvim", None, "nvim-linux-arm64.appimage"),
    ("neovim", r.NEOVIM_0_11_0, GLIBC_AMD64, "nvim", "*.tar.gz", "nvim-linux-x86_64.tar.gz"),
    ("neovim", r.NEOVIM_0_10_2, GLIBC_AMD64, "nvim", None, "nvim.appimage"),
    ("neovim", r.NEOVIM_0_10_2, GLIBC_ARM64, "nvim", None, None),
    ("zellij", r.ZELLIJ_0_41_2, GLIBC_AMD64, "zellij", None,
     "zellij-x86_64-unknown-linux-musl.tar.gz"),
    ("zellij", r.ZELLIJ_0_41_2, GLIBC_ARM64, "zellij", None,
     "zellij-aarch64-unknown-linux-musl.tar.gz"),
    ("bat", r.BAT_0_24_0, GLIBC_AMD64, "bat", None,
     "bat-v0.24.0-x86_64-unknown-linux-gnu.tar.gz"),
    ("bat", r.BAT_0_24_0, MUSL_AMD64, "bat", None,
     "bat-v0.24.0-x86_64-unknown-linux-musl.tar.gz"),
    ("bat", r.BAT_0_24_0, GLIBC_ARM64, "bat", None,
     "bat-v0.24.0-aarch64-unknown-linux-gnu.tar.gz"),
    ("fd", r.FD_10_2_0, GLIBC_ARM64, "fd", None, "fd-v10.2.0-aarch64-unknown-linux-gnu.tar.gz"),
    ("fd", r.FD_10_2_0, MUSL_AMD64, "fd", None, "fd-v10.2.0-x86_64-unknown-linux-musl.tar.gz"),
    ("delta", r.DELTA_0_18_2, GLIBC_AMD64, "delta", None,
     "delta-0.18.2-x86_64-unknown-linux-gnu.tar.gz"),
    ("delta", r.DELTA_0_18_2, GLIBC_AMD64, "delta", "*.deb", "git-delta_0.18.2_amd64.deb"),
    ("lazygit", r.LAZYGIT_0_44_1, GLIBC_AMD64, "lazygit", None,
     "lazygit_0.44.1_Linux_x86_64.tar.gz"),
    ("lazygit", r.LAZYGIT_0_44_1, GLIBC_ARM64, "lazygit", None,
     "lazygit_0.44.1_Linux_arm64.tar.gz"),
    ("gh", r.GH_2_62_0, GLIBC_AMD64, "gh", None, "gh_2.62.0_linux_amd64.tar.gz"),
    ("gh", r.GH_2_62_0, GLIBC_ARM64, "gh", None, "gh_2.62.0_linux_arm64.tar.gz"),
    ("helix", r.HELIX_24_07, GLIBC_AMD64, "hx", None, "helix-24.07-x86_64.AppImage"),
    ("helix", r.HELIX_24_07, GLIBC_ARM64, "hx", None, "helix-24.07-aarch64-linux.tar.xz"),
    ("starship", r.STARSHIP_1_21_1, GLIBC_AMD64, "starship", None,
     "starship-x86_64-unknown-linux-gnu.tar.gz"),
    ("starship", r.STARSHIP_1_21_1, GLIBC_ARM64, "starship", None,
     "starship-aarch64-unknown-linux-musl.tar.gz"),
    ("jq", r.JQ_1_7_1, GLIBC_AMD64, "jq", None, "jq-linux-amd64"),
    ("jq", r.JQ_1_7_1, GLIBC_ARM64, "jq", None, "jq-linux-arm64"),
    ("yq", r.YQ_4_44_3, GLIBC_AMD64, "yq", None, "yq_linux_amd64"),
    ("yq", r.YQ_4_44_3, GLIBC_ARM64, "yq", None, "yq_linux_arm64"),
    ("eza", r.EZA_0_20_10, GLIBC_AMD64, "eza", None, "eza_x86_64-unknown-linux-gnu.tar.gz"),
    ("eza", r.EZA_0_20_10, MUSL_AMD64, "eza", None, "eza_x86_64-unknown-linux-musl.tar.gz"),
    ("eza", r.EZA_0_20_10, GLIBC_ARM64, "eza", None, "eza_aarch64-unknown-linux-gnu.tar.gz"),
    ("zoxide", r.ZOXIDE_0_9_6, GLIBC_ARM64, "zoxide", None,
     "zoxide-0.9.6-aarch64-unknown-linux-musl.tar.gz"),
    ("zoxide", r.ZOXIDE_0_9_6, GLIBC_AMD64, "zoxide", None,
     "zoxide-0.9.6-x86_64-unknown-linux-musl.tar.gz"),
    ("obsidian", r.OBSIDIAN_1_7_7, GLIBC_AMD64, "obsidian", None, "Obsidian-1.7.7.AppImage"),
    ("obsidian", r.OBSIDIAN_1_7_7, GLIBC_ARM64, "obsidian", None,
     "Obsidian-1.7.7-arm64.AppImage"),
    ("uv", r.UV_0_5_4, GLIBC_AMD64, "uv", None, "uv-x86_64-unknown-linux-gnu.tar.gz"),
    ("uv", r.UV_0_5_4, MUSL_AMD64, "uv", None, "uv-x86_64-unknown-linux-musl.tar.gz"),
    ("kubectx", r.KUBECTX_0_9_5, GLIBC_AMD64, "kubens", None,
     "kubens_v0.9.5_linux_x86_64.tar.gz"),
    ("kubectx", r.KUBECTX_0_9_5, GLIBC_ARM64, "kubectx", None,
     "kubectx_v0.9.5_linux_arm64.tar.gz"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("release", "names", "target", "program", "hint", "expected"),
    TABLE,
    ids=[f"{row[0]}-{row[2].arch}-{row[2].libc}-{row[4] or 'auto'}" for row in TABLE],
)
def test_asset_choice_table(
    release: str,
    names: list[str],
    target: Target,
    program: str,
    hint: str | None,
    expected: str | None,
) -> None:
    """The right asset of a real release is chosen, and every other asset has a reason."""
    choice = choose([Asset(name) for name in names], target, asset_hint=hint, program=program)
    chosen = choice.chosen.asset.name if choice.chosen else None
    assert chosen == expected, choice.notes()
    rejected = {name for name, _ in choice.rejected}
    assert rejected | ({chosen} if chosen else set()) == set(names)
    assert all(reason for _, reason in choice.rejected)


def test_at_least_fifteen_projects() -> None:
    """The table covers at least fifteen real projects."""
    assert len({row[0] for row in TABLE}) >= 15


def test_rejection_reasons_name_the_mismatch() -> None:
    """Reasons say which OS, architecture, libc or format ruled an asset out."""
    choice = choose([Asset(n) for n in r.ZOXIDE_0_9_6 + r.BAT_0_24_0], MUSL_AMD64)
    reasons = dict(choice.rejected)
    assert reasons["zoxide-0.9.6-aarch64-linux-android.tar.gz"] == "built for android, not linux"
    assert reasons["zoxide-0.9.6-x86_64-apple-darwin.tar.gz"] == "built for darwin, not linux"
    assert reasons["zoxide-0.9.6-aarch64-unknown-linux-musl.tar.gz"] == (
        "built for arm64, not amd64"
    )
    assert "glibc" in reasons["bat-v0.24.0-x86_64-unknown-linux-gnu.tar.gz"]
    assert "Windows" in choose([Asset("jq-win64.exe")], GLIBC_AMD64).rejected[0][1]
    yq = dict(choose([Asset(n) for n in r.YQ_4_44_3], GLIBC_AMD64).rejected)
    assert yq["extract-checksum.sh"] == "not a program (.sh file)"
    assert "source or data archive" in yq["yq_man_page_only.tar.gz"]
    assert "raw binary yq_linux_amd64 is preferred" in yq["yq_linux_amd64.tar.gz"]


def test_no_asset_for_the_target_says_why_for_each() -> None:
    """A release with nothing for this box has no choice and a reason for every asset."""
    choice = choose([Asset(n) for n in r.NEOVIM_0_10_2], GLIBC_ARM64)
    assert choice.chosen is None
    reasons = dict(choice.rejected)
    assert "taken as amd64" in reasons["nvim.appimage"]
    assert reasons["nvim-linux64.tar.gz"] == "built for amd64, not arm64"
    assert len(reasons) == len(r.NEOVIM_0_10_2)


def test_preference_order_is_configurable() -> None:
    """A source that wants archives first gets the archive over the AppImage."""
    names = [Asset(n) for n in r.NEOVIM_0_11_0]
    assert (
        choose(names, GLIBC_AMD64, prefer=("archive", "appimage")).chosen.asset.name  # type: ignore[union-attr]
        == "nvim-linux-x86_64.tar.gz"
    )
    only_deb = choose([Asset(n) for n in r.RIPGREP_14_1_1], GLIBC_AMD64, prefer=("deb",))
    assert only_deb.chosen is not None and only_deb.chosen.asset.name.endswith("_amd64.deb")


def test_checksum_files_for_an_asset() -> None:
    """An asset's own checksum file comes before the release-wide list."""
    assets = [Asset(n) for n in [*r.ZELLIJ_0_41_2, "checksums.txt"]]
    found = checksum_candidates("zellij-x86_64-unknown-linux-musl.tar.gz", assets)
    assert [a.name for a in found] == [
        "zellij-x86_64-unknown-linux-musl.sha256sum",
        "checksums.txt",
    ]
    ripgrep = checksum_candidates(
        "ripgrep-14.1.1-x86_64-unknown-linux-musl.tar.gz", [Asset(n) for n in r.RIPGREP_14_1_1]
    )
    assert [a.name for a in ripgrep] == ["ripgrep-14.1.1-x86_64-unknown-linux-musl.tar.gz.sha256"]
    uv = checksum_candidates("uv-x86_64-unknown-linux-gnu.tar.gz", [Asset(n) for n in r.UV_0_5_4])
    assert [a.name for a in uv] == ["uv-x86_64-unknown-linux-gnu.tar.gz.sha256", "sha256.sum"]


def test_checksum_text_formats() -> None:
    """sha256sum, shasum binary-mode, BSD and lone-hash lines all parse."""
    digest = "a" * 64
    text = (
        f"{digest}  fzf-0.56.3-linux_amd64.tar.gz\n"
        f"{'b' * 64} *./dist/jq-linux-amd64\n"
        f"SHA256 (yq_linux_amd64) = {'C' * 64}\n"
        "not a checksum line\n"
    )
    assert checksums_from_text(text) == {
        "fzf-0.56.3-linux_amd64.tar.gz": digest,
        "jq-linux-amd64": "b" * 64,
        "yq_linux_amd64": "c" * 64,
    }
    assert checksums_from_text(digest + "\n") == {"": digest}


def test_classify_aliases() -> None:
    """x64, linux64, win64, macOS and aarch64 spellings map to the canonical names."""
    assert classify(Asset("tool-linux-x64.tar.gz"), GLIBC_AMD64).arch == "amd64"
    assert classify(Asset("nvim-linux64.tar.gz"), GLIBC_AMD64).os == "linux"
    assert classify(Asset("nvim-win64.zip"), GLIBC_AMD64).os == "windows"
    assert classify(Asset("gh_2.62.0_macOS_arm64.zip"), GLIBC_AMD64).os == "darwin"
    assert classify(Asset("tool_ubuntu_aarch64"), GLIBC_ARM64).reject is None
