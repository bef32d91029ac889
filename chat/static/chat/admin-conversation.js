// The admin's conversation view: each agent bubble's text (in the page as escaped text, so
// it reads as plain text without JavaScript) is rendered as Markdown by the vendored marked
// and sanitised by DOMPurify with the chat page's rules: only what Markdown makes is kept,
// no images (an attacker's URL), no attributes but links' http(s)/mailto href and lists'
// and tables' layout; links open apart.
(() => {
  const MARKDOWN_HTML = {
    ALLOWED_TAGS: [
      "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a",
      "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
    ],
    ALLOWED_ATTR: ["href", "start", "align"],
    ALLOWED_URI_REGEXP: /^(?:https?|mailto):/i,
  };
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  });
  for (const element of document.querySelectorAll(".bubble-text[data-markdown]")) {
    const html = DOMPurify.sanitize(marked.parse(element.textContent, { gfm: true, breaks: true }), MARKDOWN_HTML);
    element.innerHTML = html;
    element.classList.add("markdown");
  }
})();
