"""The provider's ratings and complaints page /provider/feedback (both databases): the rating summary per
programme and item as the public ranking computes it, comments and complaints without anyone's name, and
the manager's one answer to an open complaint (once per form, refusals beside the field)."""

import re
from dataclasses import dataclass

import pytest

from marketplace.db import db
from providers.models import Complaint
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, visible_text
from tests.support.scenario import Builder, World

PAGE = "/provider/feedback"
FORM_KEY_RE = re.compile(r'name="form_key" value="([^"]+)"')
ANSWER = "已经核实，那天的送餐员迟到了，已经批评教育，以后提前电话告知。"


@dataclass(frozen=True)
class Scene(World):
    """The standard world: p1 served alice three meals rated 5, 4 and 2 (with comments) and p2 served bob two
    rated 5 and 5. alice complained about p1 twice (one complaint resolved as upheld); bob once about p2.
    p1.user is p1's manager; `staff` scans for p1."""

    build: Builder
    open_complaint: int
    resolved_complaint: int
    other_complaint: int
    staff: object


@pytest.fixture
def scene(build):
    world = build.world()
    build.issue(world.programme)
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.bob, world.programme, world.meal, world.p2)
    p1_meals = [build.redeem(world.p1, world.alice, world.meal) for _ in range(3)]
    for served, score, comment in zip(p1_meals, (5, 4, 2), ("饭菜很热乎", None, "送来时饭已经凉了"), strict=True):
        build.rate(served, score, by=world.alice.user, comment=comment)
    for _ in range(2):
        build.rate(build.redeem(world.p2, world.bob, world.meal), 5, by=world.bob.user, comment="很好")
    resolved = build.complain(world.p1, redemption=p1_meals[2], by=world.alice.user, text="饭菜是凉的，打电话也没人接")
    build.resolve(resolved, upheld=True)
    opened = build.complain(world.p1, recipient=world.alice, text="送餐员态度不好，说话很冲")
    other = build.complain(world.p2, recipient=world.bob, text="洗澡水不热")
    return Scene(**vars(world), build=build, open_complaint=opened, resolved_complaint=resolved,
                 other_complaint=other, staff=build.user(role="provider", provider_id=world.p1.id))


def logged_in(client, user):
    assert login_page(client, user.username, PASSWORD).status_code in (302, 303)
    return client


def answer_form(page_html: str, complaint_id: int) -> dict:
    """The csrf token and form key of the answer form of *complaint_id* on the page."""
    start = page_html.index(f'action="/provider/feedback/complaints/{complaint_id}/answer"')
    form = page_html[start:page_html.index("</form>", start)]
    return {"csrf_token": csrf_from(form), "form_key": FORM_KEY_RE.search(form).group(1)}


def stored(build, complaint_id) -> Complaint:
    return build.read(lambda: db.session.get(Complaint, complaint_id))


def test_the_summary_shows_the_rankings_numbers_for_each_item(client, scene):
    text = visible_text(logged_in(client, scene.p1.user).get(PAGE))

    # Mean 11/3, two of three satisfied; the Bayesian score against the scope's mean m = 21/5 with C = 10:
    # (10 · 4.2 + 11) / 13 = 4.08; p2 scores (42 + 10) / 12 = 4.33 and ranks first.
    assert "助餐" in text
    assert scene.programme.name in text
    assert "3.7 分（3 人评价）" in text
    assert "满意率 67%" in text
    assert "综合得分 4.08" in text
    assert "第 2 名（共 2 家）" in text


def test_an_item_without_ratings_says_so(client, scene):
    text = visible_text(logged_in(client, scene.p1.user).get(PAGE))

    assert "助浴" in text  # p1 offers baths in the programme, never rated
    assert "还没有评价" in text
    assert "这项服务还没有评价，暂时没有排名" in text  # nobody has a bath rating: no order to speak of


def test_comments_show_score_day_and_item_but_no_name(client, scene):
    text = visible_text(logged_in(client, scene.p1.user).get(PAGE))

    assert "饭菜很热乎" in text
    assert "送来时饭已经凉了" in text
    assert "2 分，不满意" in text
    assert "很好" not in text  # p2's comment


def test_no_recipient_is_named_or_identified_anywhere_in_the_page(client, scene):
    for login in (scene.p1.user, scene.staff):
        body = logged_in(client, login).get(PAGE).get_data(as_text=True)
        for person in (scene.alice, scene.bob):
            for secret in (person.name, person.id_number, person.id_number_masked, person.phone):
                assert secret not in body
        client.post("/logout", data={"csrf_token": csrf_from(body)})


def test_complaints_about_this_provider_open_first_with_status_and_resolution(client, scene):
    text = visible_text(logged_in(client, scene.p1.user).get(PAGE))

    assert "正在处理的投诉：1 条" in text
    assert text.index("送餐员态度不好") < text.index("饭菜是凉的，打电话也没人接")
    assert "正在处理 （今天收到）" in text
    assert "已处理：投诉属实" in text
    assert "处理结果 属实" in text
    assert "洗澡水不热" not in text  # p2's


def test_only_the_manager_gets_the_answer_form(client, scene):
    manager_page = logged_in(client, scene.p1.user).get(PAGE).get_data(as_text=True)
    assert manager_page.count('name="answer"') == 1  # the open, unanswered one only
    assert "答复只能提交一次，提交以后不能修改。" in manager_page
    form = answer_form(manager_page, scene.open_complaint)
    client.post("/logout", data={"csrf_token": csrf_from(manager_page)})

    staff_page = logged_in(client, scene.staff).get(PAGE)
    assert 'name="answer"' not in staff_page.get_data(as_text=True)
    assert "只有本机构的管理员账号可以答复投诉" in visible_text(staff_page)
    tried = client.post(f"{PAGE}/complaints/{scene.open_complaint}/answer",
                        data={**form, "csrf_token": csrf_from(staff_page.get_data(as_text=True)), "answer": ANSWER})
    assert tried.status_code == 403
    assert stored(scene.build, scene.open_complaint).answer is None


def test_the_manager_answers_once_even_when_the_form_is_sent_twice(client, scene):
    logged_in(client, scene.p1.user)
    form = answer_form(client.get(PAGE).get_data(as_text=True), scene.open_complaint)
    path = f"{PAGE}/complaints/{scene.open_complaint}/answer"

    first = client.post(path, data={**form, "answer": f"  {ANSWER}  "})
    again = client.post(path, data={**form, "answer": f"  {ANSWER}  "})  # a double tap or a reload

    assert first.status_code == again.status_code == 303
    assert first.location == again.location == f"{PAGE}#complaint-{scene.open_complaint}"
    row = stored(scene.build, scene.open_complaint)
    assert (row.answer, row.answered_by) == (ANSWER, scene.p1.user.id)
    page = client.get(PAGE)
    text = visible_text(page)
    assert "答复已经提交" in text
    assert f"本机构的答复 {ANSWER}" in text
    assert 'name="answer"' not in page.get_data(as_text=True)


def test_a_short_answer_is_refused_beside_its_field(client, scene):
    logged_in(client, scene.p1.user)
    form = answer_form(client.get(PAGE).get_data(as_text=True), scene.open_complaint)

    response = client.post(f"{PAGE}/complaints/{scene.open_complaint}/answer", data={**form, "answer": " 好 "})

    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert f'id="error-answer-{scene.open_complaint}"' in body
    assert "应为 2 到 2000 个字。" in visible_text(response)
    assert f'href="#field-answer-{scene.open_complaint}"' in body  # the summary links to the field
    assert stored(scene.build, scene.open_complaint).answer is None
    # The same form, corrected, still goes through: the refusal did not use up its key.
    assert client.post(f"{PAGE}/complaints/{scene.open_complaint}/answer",
                       data={**form, "answer": ANSWER}).status_code == 303


def test_a_complaint_resolved_while_the_form_was_open_is_refused_plainly(client, scene):
    logged_in(client, scene.p1.user)
    form = answer_form(client.get(PAGE).get_data(as_text=True), scene.open_complaint)
    scene.build.resolve(scene.open_complaint, upheld=False)

    response = client.post(f"{PAGE}/complaints/{scene.open_complaint}/answer", data={**form, "answer": ANSWER})

    assert response.status_code == 409
    assert "当前状态下不能这样改" in visible_text(response)
    assert stored(scene.build, scene.open_complaint).answer is None


def test_another_providers_complaint_cannot_be_answered_from_here(client, scene):
    logged_in(client, scene.p1.user)
    form = answer_form(client.get(PAGE).get_data(as_text=True), scene.open_complaint)

    response = client.post(f"{PAGE}/complaints/{scene.other_complaint}/answer", data={**form, "answer": ANSWER})

    assert response.status_code == 404
    assert stored(scene.build, scene.other_complaint).answer is None


def test_only_provider_logins_open_it(client, scene):
    logged_in(client, scene.alice.user)
    assert client.get(PAGE).status_code == 403


def test_a_new_provider_sees_an_empty_page_in_plain_words(client, build):
    newcomer = build.provider(items=[build.item()])
    text = visible_text(logged_in(client, newcomer.user).get(PAGE))

    assert "本机构还没有参加任何项目，也还没有评分。" in text
    assert "还没有写了文字的评价。" in text
    assert "没有收到投诉。" in text


def test_a_suspended_provider_still_sees_its_ratings_outside_the_ranking(client, scene):
    scene.build.set_provider_status(scene.p1, "suspend")

    text = visible_text(logged_in(client, scene.p1.user).get(PAGE))

    assert "3.7 分（3 人评价）" in text
    assert "综合得分 4.08" in text  # against every rating of the scope, as before
    assert "暂不参加排名" in text
