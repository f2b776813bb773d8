"""Console password checks and the first-start admin account."""

import bcrypt

from mizu.console.auth import check_password, ensure_admin, is_bcrypt


def test_plain_and_bcrypt_passwords():
    """Plain passwords compare exactly; bcrypt hashes are verified; a bad hash never matches."""
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    assert is_bcrypt(hashed) and not is_bcrypt("pw")
    assert check_password("pw", "pw") and not check_password("pw", "PW")
    assert check_password(hashed, "pw") and not check_password(hashed, "other")
    assert not check_password("$2b$12$short", "pw")


def test_admin_password_is_created_once(tmp_path):
    """The first call writes a random password (0600); later calls read the same one."""
    first = ensure_admin(str(tmp_path / "var"))
    again = ensure_admin(str(tmp_path / "var"))
    assert first == again and list(first) == ["admin"]
    assert (tmp_path / "var" / "admin-password").stat().st_mode & 0o777 == 0o600
