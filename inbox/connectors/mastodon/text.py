"""Mastodon sends a status's ``content`` as HTML; the desk shows and matches plain text.

``html_to_text`` keeps paragraphs and line breaks, shows a link as its full URL (Mastodon
hides part of long URLs in invisible spans) and mentions and hashtags as written. The HTML
is only parsed, never rendered or executed; script and style elements are dropped.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import Comment

_DROPPED = frozenset({"script", "style", "head", "title", "template"})
_BLOCKS = frozenset({"p", "div", "blockquote", "pre", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6"})
_LEADING_MENTIONS = re.compile(r"^(?:@[^\s]+\s+)+")
_SPACE = re.compile(r"\s+")


def html_to_text(content: str) -> str:
    """Plain text of a status's HTML ``content``."""
    if not content:
        return ""
    soup = BeautifulSoup(content, "html.parser")
    blocks: list[str] = []
    current: list[str] = []

    def flush() -> None:
        text = "".join(current).strip(" \t")
        current.clear()
        if text.strip():
            blocks.append(text.strip("\n"))

    def walk(node: Tag) -> None:
        for child in node.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                current.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name.lower()
            if name in _DROPPED:
                continue
            if name == "br":
                current.append("\n")
            elif name == "a":
                current.append(_link_text(child))
            elif name in _BLOCKS:
                flush()
                walk(child)
                flush()
            else:
                walk(child)

    walk(soup)
    flush()
    return "\n\n".join(blocks)


def _link_text(link: Tag) -> str:
    classes = set(link.get("class") or ())
    shown = link.get_text()
    href = link.get("href") or ""
    # Mentions and hashtags read as written (@name, #tag); other links as their URL.
    if classes & {"mention", "hashtag", "u-url"} or shown.startswith(("@", "#")):
        return shown
    if isinstance(href, str) and href.startswith(("http://", "https://")):
        return href
    return shown


def comparable(text: str) -> str:
    """``text`` without its leading @mentions and with white space collapsed, to match a
    reply the brand posted against the text the desk sent."""
    text = _SPACE.sub(" ", text).strip()
    return _LEADING_MENTIONS.sub("", text + " ").strip()
