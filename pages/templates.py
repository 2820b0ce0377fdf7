"""Templates: what each look does (scene, moods, movements, caption voice) with a sample frame of the demo artist."""

from __future__ import annotations

import streamlit as st

from pages import _ui as ui
from pages._providers import providers_panel
from pages._samples import cached_sample, render_sample
from pipeline.templates import Template, list_templates, malleable_template


def template_card(template: Template, malleable: bool = False) -> None:
    with st.container(border=True):
        pic, body = st.columns([1, 3], gap="medium")
        with pic:
            sample = cached_sample(template, studio.settings)
            if sample:
                st.image(str(sample), width=220)
            else:
                st.caption("No sample frame could be made here.")
        with body:
            st.subheader(ui.template_label(None if malleable else template.id), anchor=False)
            if not malleable:
                st.caption(f"`{template.id}`" + ("" if template.image.uses_face_guide else " · does not use the face "
                                                                                          "guide"))
            st.markdown(template.description)
            st.markdown("**Moods**")
            with st.container(horizontal=True, gap="small"):
                for mood in template.video.moods:
                    st.badge(f"{mood.name} · {mood.energy:.0%}", color="violet")
            st.markdown("**Movements**")
            st.markdown("\n".join(f"- {m.prompt} *({m.style})*" for m in template.video.movements))
            if template.caption.examples:
                st.markdown("**Caption examples**")
                st.markdown("\n".join(f"> {e}  " for e in template.caption.examples[:4]))
            guide = template.caption.guide
            with st.expander("Scene and caption rules"):
                rules = template.image.style_rules
                for label, value in (("Camera", rules.camera), ("Environment", rules.environment),
                                     ("Subject", rules.subject), ("Realism", rules.realism),
                                     ("Caption tone", guide.tone), ("Caption role", guide.captionRole)):
                    if value:
                        st.markdown(f"**{label}.** {value}")
                if guide.rules:
                    st.markdown("**Caption rules.** " + "; ".join(guide.rules))


studio = ui.start_page()
ui.header("Templates", "A template is a look: the scene the artist is placed in, how the camera moves, the colour "
          "grade and the caption's voice. Sample frames show the demo artist.")
providers_panel(studio.settings)
templates = list_templates()
todo = [t for t in [*templates, malleable_template()] if cached_sample(t, studio.settings) is None]
if todo:
    bar = st.progress(0.0, text="Rendering sample frames…")
    for i, t in enumerate(todo, start=1):
        bar.progress((i - 1) / len(todo), text=f"Rendering the sample frame of {t.id} ({i} of {len(todo)})…")
        render_sample(t, studio.settings)
    bar.empty()
if not templates:
    ui.empty_state("style", "No templates installed", "Add a folder with a template.json under assets/templates.")
for t in templates:
    template_card(t)
st.subheader("Or no template", anchor=False)
st.caption("Leave the template out (the API's malleable mode) and the studio uses these neutral defaults.")
template_card(malleable_template(), malleable=True)
