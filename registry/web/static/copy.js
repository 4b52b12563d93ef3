// The "use it" snippets: a button copies its snippet's text to the clipboard.
(function () {
  "use strict";
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = document.getElementById(button.dataset.copy).textContent;
      function done(word) { button.textContent = word; setTimeout(function () { button.textContent = "copy"; }, 2000); }
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(function () { done("copied"); }, function () { done("select and copy"); });
      } else {
        done("select and copy");
      }
    });
  });
})();
