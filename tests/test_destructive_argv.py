"""The destructive guard judges the command that would run: each argv form below, through
wrappers and shell scripts, is marked with the program (and sub-command or flag) it runs,
and benign look-alikes of the same tools are not. Nothing is run: only argv is judged."""

from __future__ import annotations

import pytest

from hoodyd.apps.catalog.sources.desktop_entry import parse_exec
from hoodyd.apps.run.destructive import (
    ERASURE,
    FILE_SYSTEM,
    PARTITIONS,
    POWER,
    RULES,
    VOLUMES,
    classify,
    simple_commands,
)

DESTRUCTIVE: list[tuple[list[str], str, str]] = [
    # power state
    (["/usr/sbin/poweroff"], "poweroff", POWER),
    (["reboot", "-f"], "reboot", POWER),
    (["halt"], "halt", POWER),
    (["shutdown", "-h", "+5"], "shutdown", POWER),
    (["systemctl", "poweroff"], "systemctl poweroff", POWER),
    (["systemctl", "--no-wall", "reboot"], "systemctl reboot", POWER),
    (["systemctl", "suspend"], "systemctl suspend", POWER),
    (["systemctl", "hibernate"], "systemctl hibernate", POWER),
    (["systemctl", "hybrid-sleep"], "systemctl hybrid-sleep", POWER),
    (["systemctl", "kexec"], "systemctl kexec", POWER),
    (["systemctl", "soft-reboot"], "systemctl soft-reboot", POWER),
    (["systemctl", "isolate", "poweroff.target"], "systemctl poweroff.target", POWER),
    (["loginctl", "halt"], "loginctl halt", POWER),
    (["loginctl", "suspend"], "loginctl suspend", POWER),
    (["gnome-session-quit", "--power-off"], "gnome-session-quit --power-off", POWER),
    (["gnome-session-quit", "--reboot", "--no-prompt"], "gnome-session-quit --reboot", POWER),
    (["xfce4-session-logout", "--halt"], "xfce4-session-logout --halt", POWER),
    (["xfce4-session-logout", "--reboot"], "xfce4-session-logout --reboot", POWER),
    (["pm-suspend"], "pm-suspend", POWER),
    (["/usr/sbin/pm-hibernate"], "pm-hibernate", POWER),
    (["busctl", "call", "org.freedesktop.login1", "/org/freedesktop/login1",
      "org.freedesktop.login1.Manager", "PowerOff", "b", "false"], "busctl PowerOff", POWER),
    # file systems and partition tables
    (["mkfs", "-t", "ext4", "/dev/sdb1"], "mkfs", FILE_SYSTEM),
    (["/sbin/mkfs.xfs", "-f", "/dev/sdb1"], "mkfs.xfs", FILE_SYSTEM),
    (["mkswap", "/dev/sdb2"], "mkswap", FILE_SYSTEM),
    (["sgdisk", "--zap-all", "/dev/sdb"], "sgdisk", PARTITIONS),
    (["parted", "/dev/sdb", "mklabel", "gpt"], "parted", PARTITIONS),
    (["fdisk", "/dev/sdb"], "fdisk", PARTITIONS),
    (["sfdisk", "/dev/sdb"], "sfdisk", PARTITIONS),
    (["gdisk", "/dev/sdb"], "gdisk", PARTITIONS),
    # erasure
    (["wipefs", "-a", "/dev/sdb"], "wipefs", ERASURE),
    (["dd", "if=/dev/zero", "of=/dev/sda", "bs=1M"], "dd of=/dev/sda", ERASURE),
    (["dd", "of=/dev/nvme0n1"], "dd of=/dev/nvme0n1", ERASURE),
    (["shred", "-n", "1", "/dev/sdb"], "shred", ERASURE),
    (["blkdiscard", "/dev/sdb"], "blkdiscard", ERASURE),
    (["nvme", "format", "/dev/nvme0n1"], "nvme format", ERASURE),
    (["nvme", "sanitize", "-a", "2", "/dev/nvme0"], "nvme sanitize", ERASURE),
    (["hdparm", "--user-master", "u", "--security-erase", "p", "/dev/sdb"],
     "hdparm --security-erase", ERASURE),
    (["hdparm", "--security-erase-enhanced", "p", "/dev/sdb"],
     "hdparm --security-erase-enhanced", ERASURE),
    (["mdadm", "--zero-superblock", "/dev/sdb1"], "mdadm --zero-superblock", ERASURE),
    # pools, volumes, encrypted containers
    (["cryptsetup", "luksFormat", "/dev/sdb1"], "cryptsetup luksFormat", VOLUMES),
    (["cryptsetup", "erase", "/dev/sdb1"], "cryptsetup erase", VOLUMES),
    (["cryptsetup", "-q", "luksErase", "/dev/sdb1"], "cryptsetup luksErase", VOLUMES),
    (["zpool", "destroy", "tank"], "zpool destroy", VOLUMES),
    (["zfs", "destroy", "-r", "tank/home"], "zfs destroy", VOLUMES),
    (["lvremove", "-f", "vg/lv"], "lvremove", VOLUMES),
    (["vgremove", "vg"], "vgremove", VOLUMES),
    (["pvremove", "/dev/sdb1"], "pvremove", VOLUMES),
    # behind wrappers and shells
    (["sh", "-c", "reboot"], "reboot", POWER),
    (["bash", "-lc", "sleep 1 && systemctl poweroff"], "systemctl poweroff", POWER),
    (["sh", "-c", "echo bye; zpool destroy tank"], "zpool destroy", VOLUMES),
    (["sh", "-c", "false || pm-suspend"], "pm-suspend", POWER),
    (["sh", "-c", "yes | wipefs -a /dev/sdb"], "wipefs", ERASURE),
    (["sh", "-c", "echo $(blkdiscard /dev/sdb)"], "blkdiscard", ERASURE),
    (["sh", "-c", "echo `halt`"], "halt", POWER),
    (["sh", "-c", "ls\nreboot"], "reboot", POWER),
    (["sh", "-c", "for d in sdb; do wipefs -a /dev/$d; done"], "wipefs", ERASURE),
    (["sh", "-c", "X=1 exec /sbin/poweroff"], "poweroff", POWER),
    (["env", "LANG=C", "/sbin/halt"], "halt", POWER),
    (["env", "-i", "PATH=/sbin", "sh", "-c", "reboot"], "reboot", POWER),
    (["env", "-S", "sleep 1; lvremove -f vg/lv"], "lvremove", VOLUMES),
    (["sudo", "-n", "--", "poweroff"], "poweroff", POWER),
    (["sudo", "-u", "root", "systemctl", "reboot"], "systemctl reboot", POWER),
    (["pkexec", "--user", "root", "cryptsetup", "luksFormat", "/dev/sdb"],
     "cryptsetup luksFormat", VOLUMES),
    (["nohup", "nvme", "format", "/dev/nvme0n1"], "nvme format", ERASURE),
    (["timeout", "5", "reboot"], "reboot", POWER),
    (["su", "-c", "systemctl hibernate"], "systemctl hibernate", POWER),
    (["sudo", "bash", "-c", "sudo -n dd if=/dev/zero of=/dev/sdb"], "dd of=/dev/sdb", ERASURE),
    # package launchers start the package's program
    (["nix", "run", "nixpkgs#parted"], "parted", PARTITIONS),
    (["npx", "--yes", "wipefs@1.0.0"], "wipefs", ERASURE),
]  # fmt: skip

BENIGN: list[list[str]] = [
    ["systemctl", "status"],
    ["systemctl", "status", "sshd"],
    ["systemctl", "--user", "restart", "pipewire"],
    ["loginctl", "list-sessions"],
    ["gnome-session-quit", "--logout"],
    ["xfce4-session-logout", "--logout"],
    ["dd", "if=/dev/zero", "of=/tmp/x", "bs=1M", "count=1"],
    ["dd", "if=/dev/sda", "of=/dev/null"],
    ["dd", "if=/dev/urandom", "of=/dev/stdout", "count=1"],
    ["zfs", "list"],
    ["zfs", "snapshot", "tank@now"],
    ["zpool", "status"],
    ["nvme", "list"],
    ["nvme", "smart-log", "/dev/nvme0"],
    ["cryptsetup", "open", "/dev/sdb1", "secret"],
    ["cryptsetup", "status", "secret"],
    ["hdparm", "-I", "/dev/sda"],
    ["mdadm", "--detail", "/dev/md0"],
    ["busctl", "list"],
    ["git", "init"],
    ["rebooter"],
    ["/usr/bin/ddrescue", "in", "out"],
    ["htop"],
    ["sh", "-c", "echo reboot"],
    ["sh", "-c", "echo 'systemctl poweroff' > notes.txt"],
    ["bash", "-c", "ls -l /dev/sda && df -h"],
    ["sudo", "-u", "alice", "firefox"],
    ["env", "DISPLAY=:0", "xterm"],
    ["nix", "run", "nixpkgs#hello"],
    ["sh", "-c", "echo 'unbalanced"],
]


@pytest.mark.parametrize(("argv", "program", "effect"), DESTRUCTIVE, ids=" ".join)
def test_destructive_argv_is_marked(argv: list[str], program: str, effect: str) -> None:
    """Each destructive form is marked with the program, sub-command or flag it runs."""
    danger = classify("some-app", argv)
    assert danger is not None, argv
    assert (danger.program, danger.effect) == (program, effect)
    assert danger.program in danger.hint().description


@pytest.mark.parametrize("argv", BENIGN, ids=" ".join)
def test_benign_look_alikes_are_not_marked(argv: list[str]) -> None:
    """The same tools doing harmless things, and harmless commands naming them, are not
    marked."""
    assert classify("some-app", argv) is None


@pytest.mark.parametrize(
    ("exec_value", "program"),
    [
        ('sh -c "reboot"', "reboot"),
        ('sh -c "sleep 2; systemctl poweroff"', "systemctl poweroff"),
        ("gnome-session-quit --power-off", "gnome-session-quit --power-off"),
        ('env GDK_BACKEND=x11 sh -c "pm-suspend"', "pm-suspend"),
        ('bash -c "echo \\"bye\\" && zpool destroy tank"', "zpool destroy"),
    ],
)
def test_desktop_exec_lines_are_judged_after_parsing(exec_value: str, program: str) -> None:
    """A desktop entry's `Exec=` is parsed into argv (its quoting and escapes) and judged."""
    danger = classify("some-entry", parse_exec(exec_value))
    assert danger is not None and danger.program == program, exec_value


def test_the_record_name_is_judged_as_a_bare_program() -> None:
    """A record named like a destructive program is marked whatever starts it; a name whose
    danger needs a sub-command is not."""
    marked = classify("parted", ["/opt/launcher", "--app"])
    assert marked is not None and marked.program == "parted"
    assert classify("systemctl", ["/opt/launcher"]) is None


def test_scripts_split_into_simple_commands() -> None:
    """Operators, newlines and substitutions separate commands; quotes keep words whole and
    redirections are not commands."""
    script = "a 'b c' && d|e; f\ng $(h) > /dev/sda `i`"
    assert simple_commands(script) == [["a", "b c"], ["d"], ["e"], ["f"], ["g"], ["h"], ["i"]]


def test_every_rule_is_reachable_and_names_programs() -> None:
    """The one table: every rule names programs and an effect, and each program is caught
    by exactly the rule that names it."""
    for rule in RULES:
        assert rule.programs and rule.effect
        for program in rule.programs:
            if "*" in program:
                continue
            hits = [r for r in RULES if r.names(program)]
            assert hits == [rule], program
