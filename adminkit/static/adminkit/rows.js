// A row's select names the inputs it needs: each <option data-shows="a b"> shows the inputs of that row marked
// data-option="a" or "b" and hides the others (e.g. a transformation rule and its options).
'use strict';
document.addEventListener('change', function (event) {
  const select = event.target;
  if (!select.matches || !select.matches('select[data-shows-options]')) return;
  const chosen = select.options[select.selectedIndex];
  const shown = ((chosen && chosen.dataset.shows) || '').split(' ').filter(Boolean);
  select.closest('tr').querySelectorAll('[data-option]').forEach(function (input) {
    input.hidden = !shown.includes(input.dataset.option);
  });
});
