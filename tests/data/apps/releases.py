"""Asset lists of real GitHub releases, copied from the projects' release pages, for the
asset-choice table tests and the fake GitHub API."""

from __future__ import annotations

RIPGREP_14_1_1 = [
    f"ripgrep-14.1.1-{triple}{ext}"
    for triple, ext in [
        ("aarch64-apple-darwin", ".tar.gz"),
        ("aarch64-unknown-linux-gnu", ".tar.gz"),
        ("armv7-unknown-linux-gnueabihf", ".tar.gz"),
        ("armv7-unknown-linux-musleabi", ".tar.gz"),
        ("armv7-unknown-linux-musleabihf", ".tar.gz"),
        ("i686-pc-windows-msvc", ".zip"),
        ("i686-unknown-linux-gnu", ".tar.gz"),
        ("powerpc64-unknown-linux-gnu", ".tar.gz"),
        ("s390x-unknown-linux-gnu", ".tar.gz"),
        ("x86_64-apple-darwin", ".tar.gz"),
        ("x86_64-pc-windows-gnu", ".zip"),
        ("x86_64-pc-windows-msvc", ".zip"),
        ("x86_64-unknown-linux-musl", ".tar.gz"),
    ]
]
RIPGREP_14_1_1 = [
    *RIPGREP_14_1_1,
    *(name + ".sha256" for name in RIPGREP_14_1_1),
    "ripgrep_14.1.1-1_amd64.deb",
    "ripgrep_14.1.1-1_amd64.deb.sha256",
]

FZF_0_56_3 = [
    "fzf-0.56.3-darwin_amd64.tar.gz", "fzf-0.56.3-darwin_arm64.tar.gz",
    "fzf-0.56.3-freebsd_amd64.tar.gz", "fzf-0.56.3-linux_amd64.tar.gz",
    "fzf-0.56.3-linux_arm64.tar.gz", "fzf-0.56.3-linux_armv5.tar.gz",
    "fzf-0.56.3-linux_armv6.tar.gz", "fzf-0.56.3-linux_armv7.tar.gz",
    "fzf-0.56.3-linux_loong64.tar.gz", "fzf-0.56.3-linux_ppc64le.tar.gz",
    "fzf-0.56.3-linux_s390x.tar.gz", "fzf-0.56.3-openbsd_amd64.tar.gz",
    "fzf-0.56.3-windows_amd64.zip", "fzf-0.56.3-windows_arm64.zip",
    "fzf-0.56.3-windows_armv5.zip", "fzf-0.56.3-windows_armv6.zip",
    "fzf-0.56.3-windows_armv7.zip", "fzf_0.56.3_checksums.txt",
]  # fmt: skip

NEOVIM_0_11_0 = [
    "nvim-linux-arm64.appimage", "nvim-linux-arm64.appimage.zsync",
    "nvim-linux-arm64.tar.gz", "nvim-linux-x86_64.appimage",
    "nvim-linux-x86_64.appimage.zsync", "nvim-linux-x86_64.tar.gz",
    "nvim-macos-arm64.tar.gz", "nvim-macos-x86_64.tar.gz", "nvim-win64.msi",
    "nvim-win64.zip", "shasum.txt",
]  # fmt: skip

NEOVIM_0_10_2 = [
    "nvim-linux64.tar.gz", "nvim-linux64.tar.gz.sha256sum", "nvim-macos-arm64.tar.gz",
    "nvim-macos-arm64.tar.gz.sha256sum", "nvim-macos-x86_64.tar.gz",
    "nvim-macos-x86_64.tar.gz.sha256sum", "nvim-win64.msi", "nvim-win64.msi.sha256sum",
    "nvim-win64.zip", "nvim-win64.zip.sha256sum", "nvim.appimage",
    "nvim.appimage.sha256sum", "nvim.appimage.zsync", "nvim.appimage.zsync.sha256sum",
]  # fmt: skip

ZELLIJ_0_41_2 = [
    "zellij-aarch64-apple-darwin.sha256sum", "zellij-aarch64-apple-darwin.tar.gz",
    "zellij-aarch64-unknown-linux-musl.sha256sum", "zellij-aarch64-unknown-linux-musl.tar.gz",
    "zellij-x86_64-apple-darwin.sha256sum", "zellij-x86_64-apple-darwin.tar.gz",
    "zellij-x86_64-unknown-linux-musl.sha256sum", "zellij-x86_64-unknown-linux-musl.tar.gz",
]  # fmt: skip

BAT_0_24_0 = [
    "bat-musl_0.24.0_amd64.deb", "bat-musl_0.24.0_i686.deb",
    "bat-v0.24.0-aarch64-unknown-linux-gnu.tar.gz",
    "bat-v0.24.0-arm-unknown-linux-gnueabihf.tar.gz",
    "bat-v0.24.0-arm-unknown-linux-musleabihf.tar.gz", "bat-v0.24.0-i686-pc-windows-msvc.zip",
    "bat-v0.24.0-i686-unknown-linux-gnu.tar.gz", "bat-v0.24.0-i686-unknown-linux-musl.tar.gz",
    "bat-v0.24.0-x86_64-apple-darwin.tar.gz", "bat-v0.24.0-x86_64-pc-windows-gnu.zip",
    "bat-v0.24.0-x86_64-pc-windows-msvc.zip", "bat-v0.24.0-x86_64-unknown-linux-gnu.tar.gz",
    "bat-v0.24.0-x86_64-unknown-linux-musl.tar.gz", "bat_0.24.0_amd64.deb",
    "bat_0.24.0_arm64.deb", "bat_0.24.0_armhf.deb", "bat_0.24.0_i686.deb",
]  # fmt: skip

FD_10_2_0 = [
    "fd-musl_10.2.0_amd64.deb", "fd-musl_10.2.0_i686.deb",
    "fd-v10.2.0-aarch64-apple-darwin.tar.gz", "fd-v10.2.0-aarch64-unknown-linux-gnu.tar.gz",
    "fd-v10.2.0-aarch64-unknown-linux-musl.tar.gz",
    "fd-v10.2.0-arm-unknown-linux-gnueabihf.tar.gz",
    "fd-v10.2.0-arm-unknown-linux-musleabihf.tar.gz", "fd-v10.2.0-i686-pc-windows-msvc.zip",
    "fd-v10.2.0-i686-unknown-linux-gnu.tar.gz", "fd-v10.2.0-i686-unknown-linux-musl.tar.gz",
    "fd-v10.2.0-x86_64-apple-darwin.tar.gz", "fd-v10.2.0-x86_64-pc-windows-gnu.zip",
    "fd-v10.2.0-x86_64-pc-windows-msvc.zip", "fd-v10.2.0-x86_64-unknown-linux-gnu.tar.gz",
    "fd-v10.2.0-x86_64-unknown-linux-musl.tar.gz", "fd_10.2.0_amd64.deb", "fd_10.2.0_arm64.deb",
    "fd_10.2.0_armhf.deb", "fd_10.2.0_i686.deb",
]  # fmt: skip

DELTA_0_18_2 = [
    "delta-0.18.2-aarch64-apple-darwin.tar.gz", "delta-0.18.2-aarch64-unknown-linux-gnu.tar.gz",
    "delta-0.18.2-arm-unknown-linux-gnueabihf.tar.gz",
    "delta-0.18.2-i686-unknown-linux-gnu.tar.gz", "delta-0.18.2-x86_64-apple-darwin.tar.gz",
    "delta-0.18.2-x86_64-pc-windows-msvc.zip", "delta-0.18.2-x86_64-unknown-linux-gnu.tar.gz",
    "delta-0.18.2-x86_64-unknown-linux-musl.tar.gz", "git-delta-musl_0.18.2_amd64.deb",
    "git-delta_0.18.2_amd64.deb", "git-delta_0.18.2_arm64.deb", "git-delta_0.18.2_armhf.deb",
    "git-delta_0.18.2_i386.deb",
]  # fmt: skip

LAZYGIT_0_44_1 = [
    "checksums.txt", "lazygit_0.44.1_Darwin_arm64.tar.gz", "lazygit_0.44.1_Darwin_x86_64.tar.gz",
    "lazygit_0.44.1_Freebsd_32-bit.tar.gz", "lazygit_0.44.1_Freebsd_arm64.tar.gz",
    "lazygit_0.44.1_Freebsd_armv6.tar.gz", "lazygit_0.44.1_Freebsd_x86_64.tar.gz",
    "lazygit_0.44.1_Linux_32-bit.tar.gz", "lazygit_0.44.1_Linux_arm64.tar.gz",
    "lazygit_0.44.1_Linux_armv6.tar.gz", "lazygit_0.44.1_Linux_x86_64.tar.gz",
    "lazygit_0.44.1_Windows_32-bit.zip", "lazygit_0.44.1_Windows_arm64.zip",
    "lazygit_0.44.1_Windows_armv6.zip", "lazygit_0.44.1_Windows_x86_64.zip",
]  # fmt: skip

GH_2_62_0 = [
    "gh_2.62.0_checksums.txt", "gh_2.62.0_linux_386.deb", "gh_2.62.0_linux_386.rpm",
    "gh_2.62.0_linux_386.tar.gz", "gh_2.62.0_linux_amd64.deb", "gh_2.62.0_linux_amd64.rpm",
    "gh_2.62.0_linux_amd64.tar.gz", "gh_2.62.0_linux_arm64.deb", "gh_2.62.0_linux_arm64.rpm",
    "gh_2.62.0_linux_arm64.tar.gz", "gh_2.62.0_linux_armv6.deb", "gh_2.62.0_linux_armv6.rpm",
    "gh_2.62.0_linux_armv6.tar.gz", "gh_2.62.0_macOS_amd64.zip", "gh_2.62.0_macOS_arm64.zip",
    "gh_2.62.0_macOS_universal.pkg", "gh_2.62.0_windows_386.msi", "gh_2.62.0_windows_386.zip",
    "gh_2.62.0_windows_amd64.msi", "gh_2.62.0_windows_amd64.zip", "gh_2.62.0_windows_arm64.zip",
]  # fmt: skip

HELIX_24_07 = [
    "helix-24.07-aarch64-linux.tar.xz", "helix-24.07-aarch64-macos.tar.xz",
    "helix-24.07-source.tar.xz", "helix-24.07-x86_64-linux.tar.xz",
    "helix-24.07-x86_64-macos.tar.xz", "helix-24.07-x86_64-windows.zip",
    "helix-24.07-x86_64.AppImage", "helix-24.07-x86_64.AppImage.zsync",
]  # fmt: skip

STARSHIP_1_21_1 = [
    f"starship-{triple}"
    for triple in [
        "aarch64-apple-darwin.tar.gz", "aarch64-pc-windows-msvc.zip",
        "aarch64-unknown-linux-musl.tar.gz", "arm-unknown-linux-musleabihf.tar.gz",
        "i686-pc-windows-msvc.msi", "i686-pc-windows-msvc.zip",
        "i686-unknown-linux-musl.tar.gz", "x86_64-apple-darwin.tar.gz",
        "x86_64-pc-windows-msvc.msi", "x86_64-pc-windows-msvc.zip",
        "x86_64-unknown-freebsd.tar.gz", "x86_64-unknown-linux-gnu.tar.gz",
        "x86_64-unknown-linux-musl.tar.gz",
    ]
]  # fmt: skip
STARSHIP_1_21_1 = [*STARSHIP_1_21_1, *(name + ".sha256" for name in STARSHIP_1_21_1)]

JQ_1_7_1 = [
    "jq-1.7.1.tar.gz", "jq-1.7.1.zip", "jq-linux-amd64", "jq-linux-arm64", "jq-linux-armel",
    "jq-linux-armhf", "jq-linux-i386", "jq-linux-mips", "jq-linux-mips64",
    "jq-linux-mips64el", "jq-linux-mips64r6", "jq-linux-mips64r6el", "jq-linux-mipsel",
    "jq-linux-mipsr6", "jq-linux-mipsr6el", "jq-linux-powerpc", "jq-linux-ppc64el",
    "jq-linux-riscv64", "jq-linux-s390x", "jq-linux64", "jq-macos-amd64", "jq-macos-arm64",
    "jq-osx-amd64", "jq-win64.exe", "jq-windows-amd64.exe", "jq-windows-i386.exe",
    "sha256sum.txt",
]  # fmt: skip

YQ_4_44_3 = [
    "checksums", "checksums-bsd", "checksums_hashes_order", "extract-checksum.sh",
    "install-man-page.sh", "yq_darwin_amd64", "yq_darwin_amd64.tar.gz", "yq_darwin_arm64",
    "yq_darwin_arm64.tar.gz", "yq_freebsd_386", "yq_freebsd_amd64", "yq_freebsd_arm",
    "yq_linux_386", "yq_linux_386.tar.gz", "yq_linux_amd64", "yq_linux_amd64.tar.gz",
    "yq_linux_arm", "yq_linux_arm.tar.gz", "yq_linux_arm64", "yq_linux_arm64.tar.gz",
    "yq_linux_mips", "yq_linux_mips64", "yq_linux_mips64le", "yq_linux_mipsle",
    "yq_linux_ppc64", "yq_linux_ppc64le", "yq_linux_riscv64", "yq_linux_s390x",
    "yq_man_page_only.tar.gz", "yq_netbsd_386", "yq_netbsd_amd64", "yq_openbsd_386",
    "yq_openbsd_amd64", "yq_windows_386.exe", "yq_windows_386.zip", "yq_windows_amd64.exe",
    "yq_windows_amd64.zip",
]  # fmt: skip

EZA_0_20_10 = [
    "completions-0.20.10.tar.gz", "eza.exe_x86_64-pc-windows-gnu.tar.gz",
    "eza.exe_x86_64-pc-windows-gnu.zip", "eza_aarch64-unknown-linux-gnu.tar.gz",
    "eza_aarch64-unknown-linux-gnu.zip", "eza_arm-unknown-linux-gnueabihf.tar.gz",
    "eza_arm-unknown-linux-gnueabihf.zip", "eza_x86_64-unknown-linux-gnu.tar.gz",
    "eza_x86_64-unknown-linux-gnu.zip", "eza_x86_64-unknown-linux-musl.tar.gz",
    "eza_x86_64-unknown-linux-musl.zip", "man-0.20.10.tar.gz",
]  # fmt: skip

ZOXIDE_0_9_6 = [
    "zoxide-0.9.6-aarch64-apple-darwin.tar.gz", "zoxide-0.9.6-aarch64-linux-android.tar.gz",
    "zoxide-0.9.6-aarch64-pc-windows-msvc.zip", "zoxide-0.9.6-aarch64-unknown-linux-musl.tar.gz",
    "zoxide-0.9.6-arm-unknown-linux-musleabihf.tar.gz",
    "zoxide-0.9.6-armv7-unknown-linux-musleabihf.tar.gz",
    "zoxide-0.9.6-i686-unknown-linux-musl.tar.gz", "zoxide-0.9.6-x86_64-apple-darwin.tar.gz",
    "zoxide-0.9.6-x86_64-pc-windows-msvc.zip", "zoxide-0.9.6-x86_64-unknown-linux-musl.tar.gz",
    "zoxide_0.9.6-1_amd64.deb", "zoxide_0.9.6-1_arm64.deb",
]  # fmt: skip

OBSIDIAN_1_7_7 = [
    "Obsidian-1.7.7-arm64.AppImage", "Obsidian-1.7.7-universal.dmg", "Obsidian-1.7.7.AppImage",
    "Obsidian-1.7.7.exe", "obsidian-1.7.7-arm64.tar.gz", "obsidian-1.7.7.asar.gz",
    "obsidian-1.7.7.tar.gz", "obsidian_1.7.7_amd64.deb", "obsidian_1.7.7_amd64.snap",
]  # fmt: skip

UV_0_5_4 = [
    "dist-manifest.json", "sha256.sum", "source.tar.gz", "source.tar.gz.sha256",
    "uv-aarch64-apple-darwin.tar.gz", "uv-aarch64-apple-darwin.tar.gz.sha256",
    "uv-aarch64-pc-windows-msvc.zip", "uv-aarch64-unknown-linux-gnu.tar.gz",
    "uv-aarch64-unknown-linux-gnu.tar.gz.sha256", "uv-aarch64-unknown-linux-musl.tar.gz",
    "uv-aarch64-unknown-linux-musl.tar.gz.sha256", "uv-i686-pc-windows-msvc.zip",
    "uv-installer.ps1", "uv-installer.sh", "uv-x86_64-apple-darwin.tar.gz",
    "uv-x86_64-pc-windows-msvc.zip", "uv-x86_64-unknown-linux-gnu.tar.gz",
    "uv-x86_64-unknown-linux-gnu.tar.gz.sha256", "uv-x86_64-unknown-linux-musl.tar.gz",
    "uv-x86_64-unknown-linux-musl.tar.gz.sha256",
]  # fmt: skip

KUBECTX_0_9_5 = [
    "checksums.txt", "kubectx", "kubectx_v0.9.5_darwin_arm64.tar.gz",
    "kubectx_v0.9.5_darwin_x86_64.tar.gz", "kubectx_v0.9.5_linux_arm64.tar.gz",
    "kubectx_v0.9.5_linux_x86_64.tar.gz", "kubectx_v0.9.5_windows_x86_64.zip",
    "kubens", "kubens_v0.9.5_linux_x86_64.tar.gz",
]  # fmt: skip
