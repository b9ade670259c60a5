"""The pictures: drawing helpers and the lecture figures."""
